"""Offline: the full demo runs in a network namespace that has only loopback.

``unshare -n`` gives the run a namespace of its own with no interface but
``lo``: Mosquitto, a subscriber and ``edge-msa run --demo`` all live in it,
so a model or library that tried to download or phone home would fail
there. ``strace`` records every connect/sendto/sendmsg of the run, and the
test asserts that each one went to a Unix socket or to 127.0.0.1/::1.
No ``HF_HUB_OFFLINE`` or similar is set: the proof is the namespace.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from edge_msa.sources import DEMO_CLIP
from tests.conftest import REPO

SENTENCES = len(json.loads(DEMO_CLIP.with_suffix(".json").read_text())["sentences"])
# Variables that would make libraries skip the network on their own; unset, so
# the namespace alone keeps them offline.
OFFLINE_HINTS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")

INSIDE = r"""
set -eu
ip link set lo up
ip -o link show | awk -F': ' '{print $2}' > "$WORK/links"
# A public address must be unreachable in here (nothing but lo).
"$PYTHON" -c 'import socket; print(socket.socket().connect_ex(("1.1.1.1", 80)))' \
  > "$WORK/public_connect" 2>&1 || true
"$MOSQUITTO" -c "$WORK/mosquitto.conf" > /dev/null 2>&1 &
broker=$!
for _ in $(seq 100); do
  "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $PORT))" 2>/dev/null \
    && break
  sleep 0.1
done
mosquitto_sub -p "$PORT" -q 1 -t 'edge-msa/offline/sentiment' -C "$SENTENCES" -W 240 \
  > "$WORK/results.jsonl" &
sub=$!
sleep 0.5
strace -f -qq -e trace=connect,sendto,sendmsg -e signal=none -o "$WORK/strace.log" \
  "$PYTHON" -m edge_msa run --demo --device-id offline --output mqtt --mqtt-port "$PORT" \
  --state-dir "$WORK/state" 2> "$WORK/run.log"
wait "$sub" || echo "subscriber exit $?" >> "$WORK/run.log"
kill "$broker"
"""


def _namespace_command() -> list[str] | str:
    """``unshare -n`` (or ``-rn`` without root), or why it cannot run here."""
    for tool in ("unshare", "ip", "strace", "mosquitto_sub"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    for cmd in (["unshare", "-n"], ["unshare", "-rn"]):
        probe = subprocess.run([*cmd, "ip", "link", "set", "lo", "up"], capture_output=True)
        if probe.returncode == 0:
            return cmd
    return f"unshare -n is not permitted here: {probe.stderr.decode().strip()}"


def _mosquitto() -> str | None:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return exe if os.path.exists(exe) else None


# connect(5, {sa_family=AF_INET, sin_port=htons(1883), sin_addr=inet_addr("127.0.0.1")}, 16)
_FAMILY = re.compile(r"sa_family=(AF_\w+)")
_INET = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')


def outside_loopback(strace_log: str) -> list[str]:
    """The traced calls that addressed anything but a Unix socket or loopback."""
    bad = []
    for line in strace_log.splitlines():
        family = _FAMILY.search(line)
        if family is None:
            continue  # sendto/sendmsg on a connected socket: its connect was checked
        if family.group(1) in ("AF_UNIX", "AF_NETLINK"):
            continue
        addr = _INET.search(line)
        host = addr and (addr.group(1) or addr.group(2))
        if family.group(1) == "AF_UNSPEC" or host in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
            continue  # AF_UNSPEC: dissolving a UDP association, addresses nothing
        bad.append(line)
    return bad


def test_outside_loopback_parser():
    log = "\n".join([
        '12 connect(5, {sa_family=AF_INET, sin_port=htons(1883), '
        'sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
        '12 connect(6, {sa_family=AF_UNIX, sun_path="/run/x"}, 110) = 0',
        '12 connect(7, {sa_family=AF_INET6, sin6_port=htons(443), '
        'sin6_addr=inet_pton(AF_INET6, "2606:4700::1111")}, 28) = -1 ENETUNREACH',
        '12 sendto(8, "\\1\\2", 2, 0, {sa_family=AF_INET, sin_port=htons(53), '
        'sin_addr=inet_addr("8.8.8.8")}, 16) = -1 ENETUNREACH',
        '12 sendto(5, "x", 1, 0, NULL, 0) = 1',
    ])
    assert [line.split("(")[0] for line in outside_loopback(log)] == ["12 connect", "12 sendto"]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_demo_runs_offline_in_a_loopback_only_namespace(tmp_path):
    ns = _namespace_command()
    if isinstance(ns, str):
        pytest.skip(ns)
    mosquitto = _mosquitto()
    if mosquitto is None:
        pytest.skip("mosquitto is not installed (scripts/setup.sh installs it)")
    port = 18830  # the namespace is ours alone: any port is free in it
    (tmp_path / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_HINTS}
    env.update(WORK=str(tmp_path), PORT=str(port), MOSQUITTO=mosquitto, PYTHON=sys.executable,
               SENTENCES=str(SENTENCES), PYTHONUNBUFFERED="1")
    done = subprocess.run([*ns, "sh", "-c", INSIDE], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=360)
    run_log = (tmp_path / "run.log").read_text() if (tmp_path / "run.log").exists() else ""
    assert done.returncode == 0, f"{done.stderr}\n{run_log}"

    # Only loopback existed, and the outside world was unreachable.
    assert (tmp_path / "links").read_text().split() == ["lo"]
    assert (tmp_path / "public_connect").read_text().strip() != "0"

    results = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(results) == SENTENCES, run_log
    assert all(r["device_id"] == "offline" and -3 <= r["score"] <= 3 for r in results)
    assert "Traceback" not in run_log and " ERROR " not in run_log

    calls = (tmp_path / "strace.log").read_text()
    assert "127.0.0.1" in calls, "strace saw no connect to the broker: was it traced?"
    assert outside_loopback(calls) == [], "the run tried to reach the network"
