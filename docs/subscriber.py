"""Print each edge-msa result once: python subscriber.py [HOST] [PORT] [DEVICE_ID]"""

import json
import sys

import paho.mqtt.client as mqtt

host, port, device = (sys.argv[1:] + [None] * 3)[:3]
seen = set()  # after a broker crash a result can arrive twice: de-duplicate on its id


def on_message(client, userdata, msg):
    r = json.loads(msg.payload)
    if r["id"] not in seen:
        seen.add(r["id"])
        m = r["modalities"]
        print(
            f"{r['t_end']} {r['device_id']}: {r['score']:+.2f} ± {r['uncertainty']:.2f} "
            f"{r['polarity']} (text {m['text']}, audio {m['audio']}, vision {m['vision']})",
            flush=True,
        )


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
client.on_connect = lambda c, *a: c.subscribe(f"edge-msa/{device or '+'}/sentiment", qos=1)
client.on_message = on_message
client.connect(host or "localhost", int(port or 1883))
client.loop_forever()
