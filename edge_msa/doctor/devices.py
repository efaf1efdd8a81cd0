"""Cameras (OpenCV) and audio inputs (sounddevice / PortAudio) this device can open."""

from __future__ import annotations

import glob
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from edge_msa.config import Config
from edge_msa.doctor.report import Check

PROBE_INDICES = range(4)
OPEN_TIMEOUT_S = 5.0  # a wedged V4L2 driver can block read() forever


def camera_candidates(configured: int | str | None) -> list[int | str]:
    """/dev/video* where the OS has them (Linux), else indices 0-3; plus the configured one."""
    paths = sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p))
    found: list[int | str] = list(paths) if paths else list(PROBE_INDICES)
    if configured is not None:
        dev = (
            int(configured) if isinstance(configured, str) and configured.isdigit() else configured
        )
        if dev not in found and not (isinstance(dev, int) and f"/dev/video{dev}" in found):
            found.append(dev)
    return found


def probe_camera(device: int | str) -> tuple[int, int] | None:
    """(width, height) of a frame actually read, or None."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # we report failures ourselves
    import cv2

    cap = cv2.VideoCapture(device)
    try:
        if not cap.isOpened():
            return None
        ok, image = cap.read()
        return (int(image.shape[1]), int(image.shape[0])) if ok and image is not None else None
    finally:
        cap.release()


def check_cameras(cfg: Config) -> list[Check]:
    configured = cfg.source.camera
    opened: dict[str, tuple[int, int]] = {}
    pool = ThreadPoolExecutor(1, thread_name_prefix="doctor-camera")
    try:
        for dev in camera_candidates(configured):
            try:
                size = pool.submit(probe_camera, dev).result(OPEN_TIMEOUT_S)
            except FutureTimeout:
                break  # the probe thread is stuck in the driver; later ones would queue behind it
            if size is not None:
                opened[str(dev)] = size
    finally:
        pool.shutdown(wait=False)
    listing = ", ".join(f"{d} {w}x{h}" for d, (w, h) in opened.items())
    if configured is not None:
        key = _camera_key(configured)
        if not any(_camera_key(d) == key for d in opened):
            return [
                Check(
                    "FAIL",
                    "cameras",
                    f"configured camera {configured!r} cannot be opened "
                    f"(opened: {listing or 'none'})",
                    "check the cable and permissions (group video), or pick another --camera",
                )
            ]
        return [Check("ok", "cameras", listing)]
    if not opened:
        probed = "/dev/video*" if glob.glob("/dev/video*") else "indices 0-3"
        return [
            Check(
                "warn",
                "cameras",
                f"none could be opened (probed {probed})",
                "connect a camera (and add the user to group video), or use --media / --demo",
            )
        ]
    return [Check("ok", "cameras", listing)]


def _camera_key(dev: int | str) -> str:
    s = str(dev)
    return f"/dev/video{s}" if s.isdigit() else s


def check_audio(cfg: Config) -> list[Check]:
    src = cfg.source
    needed = src.microphone is not None or (src.camera is not None and src.use_microphone)
    fail = "FAIL" if needed else "warn"
    try:
        import sounddevice as sd
    except OSError as e:  # sounddevice raises OSError when libportaudio is absent
        fix = (
            "sudo apt-get install libportaudio2"
            if sys.platform.startswith("linux")
            else "install PortAudio"
        )
        return [Check(fail, "audio inputs", f"PortAudio library not found ({e})", fix)]
    try:
        devices = sd.query_devices()
    except Exception as e:  # PortAudio present but no host API works (no ALSA config, ...)
        return [
            Check(
                fail,
                "audio inputs",
                f"PortAudio cannot list devices ({e})",
                "check ALSA/PulseAudio is configured for this user",
            )
        ]
    inputs = [d for d in devices if d.get("max_input_channels", 0) > 0]
    if not inputs:
        return [
            Check(
                fail,
                "audio inputs",
                "no input device",
                "connect a microphone, or run with --media / --demo / --no-microphone",
            )
        ]
    listing = "; ".join(
        f"[{d['index']}] {d['name']} ({d['max_input_channels']} ch, "
        f"{d['default_samplerate']:.0f} Hz)"
        for d in inputs[:8]
    )
    if src.microphone is not None:
        want = str(src.microphone)
        match = [d for d in inputs if want == str(d["index"]) or want.lower() in d["name"].lower()]
        if not match:
            return [
                Check(
                    "FAIL",
                    "audio inputs",
                    f"configured microphone {want!r} not found; inputs: {listing}",
                    "pass an index or a part of a name listed here",
                )
            ]
    more = f" (+{len(inputs) - 8} more)" if len(inputs) > 8 else ""
    return [Check("ok", "audio inputs", listing + more)]
