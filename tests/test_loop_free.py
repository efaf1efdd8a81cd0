"""The event loop stays free on slow storage: with every fsync taking a
second and a half (an LD_PRELOAD shim, as a worn SD card or eMMC can), the
outbox's commits wait on their own thread and the VAD keeps up with a
real-time stream."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

FSYNC_S = 1.5

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* fsync and fdatasync of the whole process sleep first: slow storage. */
static long calls;

static void nap(void) {
    const char *s = getenv("SLOWFS_SLEEP_S");
    double d = s ? atof(s) : 1.0;
    struct timespec ts = {(time_t)d, (long)((d - (time_t)d) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {}
    __sync_fetch_and_add(&calls, 1);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    nap();
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    nap();
    return real(fd);
}

__attribute__((destructor)) static void report(void) {
    const char *p = getenv("SLOWFS_COUNT");
    FILE *f = p ? fopen(p, "w") : NULL;
    if (f) { fprintf(f, "%ld\n", calls); fclose(f); }
}
"""

# The real runtime (app.run) on the demo at wall-clock pace; the segmenter is
# wrapped to note, for each chunk, how late the VAD gets it.
DRIVER = textwrap.dedent("""
    import asyncio, json, statistics, sys, time
    from edge_msa.config import load_config
    from edge_msa.runtime import app

    lags = []
    real_load = app.load_models

    class Timed:
        def __init__(self, inner):
            self._inner = inner
        def __getattr__(self, name):
            return getattr(self._inner, name)
        def push(self, chunk):
            lags.append(time.monotonic() - chunk.t)
            return self._inner.push(chunk)

    def load_models(*args, **kwargs):
        segmenter, *rest = real_load(*args, **kwargs)
        return (Timed(segmenter), *rest)

    app.load_models = load_models
    cfg = load_config(None, json.loads(sys.argv[1]), environ={})
    rc = asyncio.run(app.run(cfg))
    typical = statistics.median(lags)
    print(json.dumps({"rc": rc, "chunks": len(lags), "late_s": max(lags) - typical}))
""")


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> str:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler for the slow-fsync shim")
    d = tmp_path_factory.mktemp("shim")
    (d / "slowfs.c").write_text(SHIM)
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-o", str(d / "slowfs.so"),
                    str(d / "slowfs.c"), "-ldl"], check=True)
    return str(d / "slowfs.so")


def test_vad_keeps_up_while_every_fsync_takes_1_5_s(shim, broker, subscribe, tmp_path):
    sub = subscribe(broker.port, "edge-msa/slowfs/sentiment")
    cfg = {
        "device_id": "slowfs",
        "source": {"demo": True, "realtime": True},
        "asr": {"enabled": False},
        "vision": {"enabled": False},
        "mqtt": {"port": broker.port},
        "output": {"sinks": ["mqtt"]},
        "runtime": {"state_dir": str(tmp_path / "state"), "flush_timeout_s": 60},
    }
    env = {
        **os.environ,
        "LD_PRELOAD": shim,
        "SLOWFS_SLEEP_S": str(FSYNC_S),
        "SLOWFS_COUNT": str(tmp_path / "fsyncs"),
    }
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cfg)], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    fsyncs = int((tmp_path / "fsyncs").read_text())
    # The storage was slow: every result's insert and every delete after its PUBACK waited
    # (at least one fsync each), which on the event loop held the VAD up by seconds.
    assert fsyncs >= 10, (fsyncs, proc.stderr[-2000:])
    assert out["rc"] == 0 and out["chunks"] > 100, out
    assert out["late_s"] < FSYNC_S / 2, (out, proc.stderr[-2000:])
    # And nothing was lost to the slowness: every result reached the broker.
    assert sub.wait_for(lambda: len(sub.results()) == 5, 30), proc.stderr[-2000:]
