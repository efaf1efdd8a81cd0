"""An utterance's last steps, each under the supervisor: what was heard,
fusion, delivery.

A failure here costs what it must and no more: a stage of the audio side
that failed leaves its modality absent (:class:`Heard` says which), a fusion
that failed drops the utterance, and each is reported once, with the
utterance's times, to the :class:`Supervisor`, which ends the run when the
same stage keeps failing.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass

from edge_msa.runtime.analyzer import Analyzer, Heard
from edge_msa.runtime.delivery import Delivery, Span
from edge_msa.runtime.face_track import FaceSummary
from edge_msa.runtime.supervisor import Supervisor

# What an utterance loses when a stage of its audio side fails.
ABSENT_WHEN_FAILED = {
    "hear": "text and audio are absent",
    "asr": "text and audio are absent",
    "voice": "audio is absent",
    "text": "text is absent",
}


@dataclass(frozen=True)
class FaceOnly:
    """Nobody spoke for a while but a face was in view: a result from it alone."""

    span: Span
    face: FaceSummary


class UtteranceSteps:
    def __init__(
        self, analyzer: Analyzer, pool: Executor, supervisor: Supervisor, delivery: Delivery
    ) -> None:
        self.analyzer = analyzer
        self.pool = pool  # the models' thread: fusion never runs on the event loop
        self.supervisor = supervisor
        self.delivery = delivery

    async def heard(self, future: asyncio.Future[Heard], span: Span) -> Heard:
        """What was heard; each stage that failed on it is reported once."""
        try:
            heard = await future
        except Exception as e:  # outside the analyzer's own per-stage guards
            self.supervisor.failed("hear", str(span), e, ABSENT_WHEN_FAILED["hear"])
            return Heard.nothing()
        for stage in heard.ran:
            self.supervisor.ok(stage)
        for stage, error in heard.failed.items():
            self.supervisor.failed(stage, str(span), error, ABSENT_WHEN_FAILED[stage])
        return heard

    async def finish(self, heard: Heard, face: FaceSummary | None, span: Span) -> None:
        """Fuse and deliver."""
        loop = asyncio.get_running_loop()
        try:
            analysis = await loop.run_in_executor(self.pool, self.analyzer.fuse, heard, face)
        except Exception as e:
            self.supervisor.failed("fusion", str(span), e, "it is dropped")
            return
        self.supervisor.ok("fusion")
        try:
            self.delivery.deliver(analysis, span)
        except Exception as e:
            self.supervisor.failed("delivery", str(span), e, "its result is lost")
            return
        self.supervisor.ok("delivery")
