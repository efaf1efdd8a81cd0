"""MQTT publishing from the outbox, with reconnection and backoff.

Topics under ``<prefix>/<device_id>/``: ``sentiment`` (QoS 1, one message
per result), ``availability`` (retained ``online``/``offline``, ``offline``
also as the will) and ``status`` (retained JSON health summary).

A result is removed from the outbox only after the broker's PUBACK. If the
connection drops between the broker receiving a result and us seeing the
PUBACK, the result is sent again after the reconnect: consumers de-duplicate
on ``id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Callable

import aiomqtt

from edge_msa.config import MqttConfig
from edge_msa.publishing.outbox import Outbox

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0  # a PUBACK that takes longer means the link is gone


class Topics:
    def __init__(self, prefix: str, device_id: str) -> None:
        base = f"{prefix}/{device_id}"
        self.sentiment = f"{base}/sentiment"
        self.availability = f"{base}/availability"
        self.status = f"{base}/status"


class MqttPublisher:
    """Drains the outbox to the broker; ``run`` until ``close`` is called."""

    def __init__(
        self,
        cfg: MqttConfig,
        device_id: str,
        outbox: Outbox,
        status: Callable[[], dict[str, object]] = dict,
    ) -> None:
        self.cfg = cfg
        self.device_id = device_id
        self.topics = Topics(cfg.prefix, device_id)
        self.outbox = outbox
        self.status = status
        self.published = 0
        self.connected = False
        self._wake = asyncio.Event()
        self._closing = False
        self._status_due = False  # a source's state changed: publish the status now
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """A new result is in the outbox."""
        self._wake.set()

    def status_changed(self) -> None:
        """A source's state changed (lost, reconnected): publish the status now."""
        self._status_due = True
        self._wake.set()

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self._client() as client:
                    self._on_connected()
                    delay = 0.5
                    await self._serve(client)
                    return
            except aiomqtt.MqttError as e:
                self.connected = False
                if self._closing and self.outbox.count() == 0:
                    return
                log.warning(
                    "MQTT broker %s:%d unreachable (%s); %d result(s) wait in the outbox; "
                    "retrying in %.1f s",
                    self.cfg.host, self.cfg.port, e, self.outbox.count(), delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.cfg.backoff_max_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="mqtt")

    async def stop(self, timeout: float) -> int:
        """Deliver what is pending for up to ``timeout`` s; returns how many remain.

        What is not delivered by then stays in the outbox for the next start.
        """
        self._closing = True
        self._wake.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._task, timeout)
        return self.outbox.count()

    def _on_connected(self) -> None:
        self.connected = True
        log.info("MQTT connected to %s:%d", self.cfg.host, self.cfg.port)

    async def _serve(self, client: aiomqtt.Client) -> None:
        await client.publish(self.topics.availability, "online", qos=1, retain=True)
        await self._publish_status(client)
        listener = await self._start_ha_discovery(client) if self.cfg.ha_discovery else None
        try:
            await self._serve_results(client)
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await listener

    async def _start_ha_discovery(self, client: aiomqtt.Client) -> asyncio.Task[None]:
        from edge_msa.publishing import ha

        await ha.publish(
            client, ha.discovery_messages(self.cfg, self.device_id), PUBLISH_TIMEOUT_S
        )
        await client.subscribe(ha.status_topic(self.cfg), qos=1)
        return asyncio.create_task(self._ha_birth(client), name="ha-birth")

    async def _ha_birth(self, client: aiomqtt.Client) -> None:
        """Home Assistant restarted (birth message ``online``): send the configs again."""
        from edge_msa.publishing import ha

        async for message in client.messages:
            if message.topic.matches(ha.status_topic(self.cfg)) and message.payload == b"online":
                log.info("Home Assistant is online: republishing discovery")
                await ha.publish(
                    client, ha.discovery_messages(self.cfg, self.device_id), PUBLISH_TIMEOUT_S
                )

    async def _serve_results(self, client: aiomqtt.Client) -> None:
        while True:
            sent = await self._drain(client)
            if sent or self._status_due:
                self._status_due = False
                await self._publish_status(client)
            if self._closing and self.outbox.count() == 0:
                break
            if not self._closing:
                await self._wake.wait()
            self._wake.clear()
        await self._publish_status(client, state="stopped")
        await client.publish(self.topics.availability, "offline", qos=1, retain=True)

    async def _drain(self, client: aiomqtt.Client) -> int:
        sent = 0
        while batch := self.outbox.pending():
            for item in batch:
                await client.publish(
                    self.topics.sentiment, item.payload, qos=1, timeout=PUBLISH_TIMEOUT_S
                )
                self.outbox.remove(item.seq)
                sent += 1
        self.published += sent
        return sent

    async def _publish_status(self, client: aiomqtt.Client, state: str = "running") -> None:
        body = {"state": state, "outbox_pending": self.outbox.count(), **self.status()}
        await client.publish(
            self.topics.status, json.dumps(body), qos=1, retain=True, timeout=PUBLISH_TIMEOUT_S
        )

    def _client(self) -> aiomqtt.Client:
        return make_client(
            self.cfg,
            f"edge-msa-{self.device_id}",
            will=aiomqtt.Will(self.topics.availability, "offline", qos=1, retain=True),
        )


def make_client(
    cfg: MqttConfig, identifier: str, will: aiomqtt.Will | None = None
) -> aiomqtt.Client:
    """A client with the config's TLS and credentials (shared with `edge-msa doctor`)."""
    tls = None
    if cfg.tls:
        tls = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    return aiomqtt.Client(
        cfg.host,
        cfg.port,
        identifier=identifier,
        username=cfg.username,
        password=cfg.password,
        keepalive=cfg.keepalive,
        timeout=PUBLISH_TIMEOUT_S,
        tls_context=tls,
        will=will,
    )
