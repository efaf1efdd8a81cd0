#!/usr/bin/env bash
# Plays the bundled demo clip and publishes its results over MQTT to a
# throw-away Mosquitto on a free loopback port; a subscriber prints them.
# Without mosquitto the results go to stdout as JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."
state=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$state"' EXIT

broker=$(command -v mosquitto || echo /usr/sbin/mosquitto)
if [ -x "$broker" ]; then
  port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$state/mosquitto.conf"
  "$broker" -c "$state/mosquitto.conf" >/dev/null 2>&1 &
  sleep 0.5
  # What a consumer sees: the results and the availability, as they arrive.
  mosquitto_sub -p "$port" -t 'edge-msa/+/sentiment' -t 'edge-msa/+/availability' -v &
  exec_args=(--output mqtt --mqtt-port "$port")
else
  echo "demo: mosquitto not found; results go to stdout only" >&2
  exec_args=(--output jsonl)
fi
.venv/bin/edge-msa run --demo --device-id demo --state-dir "$state" "${exec_args[@]}"
sleep 0.3
