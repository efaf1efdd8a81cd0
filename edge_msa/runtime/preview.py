"""Live preview: the analysed frames with the face box, the face's expression and the
current sentiment with its uncertainty, written to an mp4 and/or shown in a window.

Drawing and encoding run in the preview's own thread: the pipeline only hands
over a reference to the frame (dropped when the thread lags, never waited
for), so a preview cannot slow the analysis. The mp4 holds the analysed
frames (at most ``vision.max_fps`` a second), at that rate.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path

import numpy as np

from edge_msa.runtime.pipeline import PipelineListener
from edge_msa.types import FACE_EMOTIONS, FaceObservation, SentimentResult, VideoFrame

log = logging.getLogger(__name__)

WINDOW = "edge-msa preview"
_STOP = object()
GREEN, WHITE, BLACK = (80, 200, 80), (255, 255, 255), (0, 0, 0)


def gui_problem() -> str | None:
    """Why a window cannot open here (one line), or None when it can."""
    import cv2

    gui = next(
        (
            line.split(":", 1)[1].strip()
            for line in cv2.getBuildInformation().splitlines()
            if line.strip().startswith("GUI:")
        ),
        "",
    )
    if gui.upper() in ("", "NONE"):
        return (
            "--preview: this OpenCV build (opencv-python-headless) has no GUI, so no window; "
            "use --preview-out FILE.mp4"
        )
    if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "--preview: no display (DISPLAY is unset), so no window; use --preview-out FILE.mp4"
    return None


class Preview(PipelineListener):
    def __init__(self, path: Path | None, fps: float, window: bool = False) -> None:
        self.path = Path(path).expanduser() if path is not None else None
        self.fps = fps
        self.window = window
        self.frames_written = 0
        self.frames_skipped = 0
        self._sentiment: SentimentResult | None = None
        self._q: queue.Queue = queue.Queue(maxsize=8)
        self._writer = None
        self._size: tuple[int, int] | None = None
        self._thread = threading.Thread(target=self._run, name="preview", daemon=True)

    def open(self) -> None:
        """Checks the output folder now, so that a bad path fails before the run starts."""
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    # -- PipelineListener (on the event loop: never block) ---------------

    def frame(self, frame: VideoFrame, face: FaceObservation | None) -> None:
        try:
            self._q.put_nowait((frame.image, face, self._sentiment))
        except queue.Full:
            self.frames_skipped += 1

    def result(self, result: SentimentResult) -> None:
        self._sentiment = result

    # -- the preview thread ----------------------------------------------

    def _run(self) -> None:
        while (item := self._q.get()) is not _STOP:
            try:
                self._show(draw(*item))
            except Exception:  # a preview problem must never reach the pipeline
                log.warning("preview failed; no more preview frames", exc_info=True)
                break
        self._release()

    def _show(self, image: np.ndarray) -> None:
        import cv2

        if self.path is not None:
            if self._writer is None:
                self._size = (image.shape[1], image.shape[0])
                self._writer = cv2.VideoWriter(
                    str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self._size
                )
                if not self._writer.isOpened():
                    raise OSError(f"cannot write {self.path} (mp4v)")
            if (image.shape[1], image.shape[0]) != self._size:  # a stream changed resolution
                image = cv2.resize(image, self._size)
            self._writer.write(image)
            self.frames_written += 1
        if self.window:
            cv2.imshow(WINDOW, image)
            cv2.waitKey(1)

    def _release(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self.window:
            import cv2

            cv2.destroyAllWindows()

    def close(self) -> None:
        """Write what is queued and finish the file."""
        if not self._thread.is_alive():
            return
        self._q.put(_STOP)  # blocking is fine here: the pipeline has ended
        self._thread.join(30)
        if self.path is not None:
            log.info("preview: %d frame(s) written to %s", self.frames_written, self.path)


def draw(image: np.ndarray, face: FaceObservation | None, result: SentimentResult | None):
    """A copy of ``image`` with the face box, its expression and the current sentiment."""
    import cv2

    out = image.copy()  # the frame may still be referenced elsewhere
    if face is not None:
        x, y, w, h = face.box
        cv2.rectangle(out, (x, y), (x + w, y + h), GREEN, 2)
        k = int(np.argmax(face.probs))
        _label(out, f"{FACE_EMOTIONS[k]} {face.probs[k]:.0%}", (x, max(y - 8, 16)), GREEN)
    if result is None:
        text = "sentiment: waiting for the first result"
    else:
        text = f"sentiment {result.score:+.2f} +/- {result.uncertainty:.2f} {result.polarity}"
    cv2.rectangle(out, (0, 0), (out.shape[1], 28), BLACK, -1)
    _label(out, text, (8, 20), WHITE)
    return out


def _label(image: np.ndarray, text: str, org: tuple[int, int], color) -> None:
    import cv2

    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.55, BLACK, 3, cv2.LINE_AA)
    cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.55, color, 1, cv2.LINE_AA)
