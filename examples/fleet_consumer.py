"""One member of a group of consumers that share a fleet's edge-msa results.

    python examples/fleet_consumer.py --host broker.local --name worker-1
    python examples/fleet_consumer.py --host broker.local --name worker-2

Every process started with the same ``$share/<group>/<filter>`` topic (MQTT 5
shared subscription) is one member of the group: the broker hands each result
to exactly one member, so adding a process adds capacity. It prints one JSON
line per result it handles and one per change of a device's availability:

    {"event": "result", "consumer": "worker-1", "id": "...", "device_id": "lobby", ...}
    {"event": "availability", "consumer": "worker-1", "device_id": "lobby", "state": "online"}

Availability uses a plain subscription, not the shared one: every member should
know which devices are up, and brokers do not send retained messages to shared
subscriptions (MQTT 5, 4.8.2). See docs/fleet.md. Needs paho-mqtt >= 2.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections import OrderedDict
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

DEFAULT_TOPIC = "$share/edge-msa-consumers/edge-msa/+/sentiment"
SEEN_MAX = 10_000  # a repeat follows its original within one reconnection


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Consumer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.topics = [args.topic] + ([args.availability_topic] if args.availability_topic else [])
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=args.name, protocol=mqtt.MQTTv5
        )
        self.client.on_connect = self.on_connect
        self.client.on_subscribe = self.on_subscribe
        self.client.on_message = self.on_message
        if args.username:
            password = Path(args.password_file).read_text().splitlines()[0] if (
                args.password_file) else None
            self.client.username_pw_set(args.username, password)
        if args.tls:
            self.client.tls_set(ca_certs=args.ca_file)

    def run(self) -> None:
        props = None
        if self.args.session_expiry > 0:
            # A persistent session: the broker queues this member's share of the
            # results while it is away (up to the expiry).
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.args.session_expiry
        self.client.connect(
            self.args.host, self.args.port, clean_start=self.args.session_expiry == 0,
            properties=props,
        )
        self.client.loop_forever()

    def on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            sys.exit(f"fleet_consumer: the broker refused the connection: {reason_code}")
        client.subscribe([(t, 1) for t in self.topics])

    def on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        pairs = zip(self.topics, reason_codes, strict=True)
        refused = [f"{t} ({rc})" for t, rc in pairs if rc.is_failure]
        if refused:  # e.g. a broker without shared subscriptions
            print(f"fleet_consumer: subscription refused: {', '.join(refused)}", file=sys.stderr)
            client.disconnect()
            sys.exit(1)
        emit("ready", consumer=self.args.name, topics=self.topics)

    def on_message(self, client, userdata, msg) -> None:
        device = msg.topic.split("/")[-2]
        if msg.topic.endswith("/availability"):
            state = msg.payload.decode(errors="replace")
            emit("availability", consumer=self.args.name, device_id=device, state=state)
            return
        try:
            result = json.loads(msg.payload)
            rid = result["id"]
        except (ValueError, KeyError, TypeError):
            print(f"fleet_consumer: not a result on {msg.topic}", file=sys.stderr)
            return
        # A broker crash can deliver a result twice: de-duplicate on its id. Within a
        # group a repeat may go to another member; a consumer that must never count
        # twice keeps the ids in a shared store (a unique key in its database).
        if rid in self.seen:
            return
        self.seen[rid] = None
        if len(self.seen) > SEEN_MAX:
            self.seen.popitem(last=False)
        self.handle(result)

    def handle(self, result: dict) -> None:
        """The work: here one line per result; put yours instead."""
        emit(
            "result", consumer=self.args.name, id=result["id"], device_id=result["device_id"],
            t_end=result.get("t_end"), score=result.get("score"),
            polarity=result.get("polarity"), modalities=result.get("modalities"),
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--topic", default=DEFAULT_TOPIC,
                   help="results; $share/<group>/... shares them in a group (%(default)s)")
    p.add_argument("--availability-topic", default="edge-msa/+/availability",
                   help="devices' availability, a plain subscription ('' for none)")
    p.add_argument("--name", default=None, help="client id, also printed with each line")
    p.add_argument("--session-expiry", type=int, default=0,
                   help="seconds the broker keeps this member's session (0: clean)")
    p.add_argument("--username")
    p.add_argument("--password-file", help="file whose first line is the password")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca-file", help="CA certificate (the system's CAs when unset)")
    args = p.parse_args(argv)
    if args.name is None:
        args.name = f"{socket.gethostname()}-{os.getpid()}"
    return args


if __name__ == "__main__":
    Consumer(parse_args()).run()
