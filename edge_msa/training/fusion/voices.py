"""Real voices in the fusion training: RAVDESS clips whose words are neutral.

Each clip row (:mod:`edge_msa.data.voices`: heard through the runtime's audio
path) carries the real voice's audio tokens, its out-of-fold voice-emotion
probabilities (voice bank: never scored by a model that saw the actor; the
shipped head saw them all) and a valence target from the acted emotion
(``data.real_voices.valence``). The default mapping, happy +1.5, neutral and
calm 0, sad / angry / fearful / disgust -1.5: acted emotion on neutral words
reads clearly but is not the strongest opinion of a MOSI review (+-3); 1.5
sits between MOSI's "weakly" (1) and plain (2) positive / negative, a margin
of one MAE from the runtime's +-0.5 polarity thresholds. Surprise goes either
way: dropped.

So that the model cannot key on RAVDESS's two sentences, the text beside a
clip is drawn each time: (a) the clip's own ASR transcript (flow 1: the real
sentence), (b) another neutral training sentence (|label| < ``neutral_below``;
flow 1 its real text, flow 2 its ASR transcript when it was spoken, else the
real text flagged as recognised), or (c) none (flow 2; flow 1 the real
sentence, which the MIA learns to imagine). The target stays the voice's
valence in all three: the words are neutral, so what the speaker means is in
the voice (the neutral sentence's own label, within +-0.5, is not blended in:
it is inside MOSI's annotator spread and would only blur the voice's target).
Faces are absent (RAVDESS speech has no video here, and a face drawn to match
the valence would give the answer away); the audio is never dropped from a
clip row (neutral words alone would then carry a voice target and bias
text-only predictions).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_msa.fusion.features import FusionInputs
from edge_msa.training.fusion.config import RealVoicesConfig, TrainConfig

log = logging.getLogger(__name__)

RAVDESS_FEED = "ravdess_valid"


@dataclass
class RealVoices:
    """Clip rows of some actors: features, targets and where they came from."""

    stems: list[str]
    actors: np.ndarray  # (N,) str
    emotions: np.ndarray  # (N,) str
    labels: np.ndarray  # (N,) float32 valence
    text: np.ndarray  # (N, TEXT_DIM) the real sentence
    asr_text: np.ndarray  # (N, TEXT_DIM) the ASR transcript
    asr_state: np.ndarray  # (N,) present / simulated / absent
    audio: list[np.ndarray]  # (T, 384) float16 each
    voice_probs: np.ndarray  # (N, 7) out of fold

    def __len__(self) -> int:
        return len(self.stems)

    def subset(self, rows: np.ndarray) -> RealVoices:
        return RealVoices(
            stems=[self.stems[i] for i in rows],
            actors=self.actors[rows],
            emotions=self.emotions[rows],
            labels=self.labels[rows],
            text=self.text[rows],
            asr_text=self.asr_text[rows],
            asr_state=self.asr_state[rows],
            audio=[self.audio[i] for i in rows],
            voice_probs=self.voice_probs[rows],
        )


def make_rows(heard: list[dict], probs: dict[str, np.ndarray], rv: RealVoicesConfig, texts):
    """RealVoices of the heard clips whose emotion has a valence; ``probs`` by stem."""
    from edge_msa.config import ConfigError

    keep = [h for h in heard if str(h["emotion"]) in rv.valence]
    missing = [str(h["stem"]) for h in keep if str(h["stem"]) not in probs]
    if missing:
        raise ConfigError(
            f"data.real_voices: {len(missing)} clips (e.g. {missing[0]}) are not in the voice "
            "bank; it must score every clip out of fold (rebuild it for this data folder)"
        )
    stems = [str(h["stem"]) for h in keep]
    return RealVoices(
        stems=stems,
        actors=np.array([str(h["actor"]) for h in keep]),
        emotions=np.array([str(h["emotion"]) for h in keep]),
        labels=np.array([rv.valence[str(h["emotion"])] for h in keep], np.float32),
        text=texts.embed([str(h["statement"]) for h in keep], stems),
        asr_text=texts.embed([str(h.get("asr_text", "")) for h in keep], stems),
        asr_state=np.array([str(h.get("asr_state", "absent")) for h in keep], "<U9"),
        audio=[h["audio_tokens"] for h in keep],
        voice_probs=np.stack([probs[s] for s in stems]).astype(np.float32),
    )


def split_actors(v: RealVoices, valid_actors: list[str]) -> tuple[RealVoices, RealVoices]:
    """(training actors' rows, validation actors' rows): no actor in both."""
    valid = np.isin(v.actors, [a.zfill(2) for a in valid_actors])
    return v.subset(np.flatnonzero(~valid)), v.subset(np.flatnonzero(valid))


def balanced_repeats(v: RealVoices, rv: RealVoicesConfig) -> np.ndarray:
    """Row indices for one epoch: each clip ``repeats`` times, and with ``balance``
    the negative, neutral and positive clips repeated to about the same count
    (RAVDESS has four negative emotions for one positive)."""
    sign = np.sign(v.labels).astype(int)
    reps = np.full(len(v), rv.repeats)
    if rv.balance and len(v):
        counts = {s: int((sign == s).sum()) for s in np.unique(sign)}
        most = max(counts.values())
        for s, n in counts.items():
            reps[sign == s] *= max(int(round(most / n)), 1)
    return np.repeat(np.arange(len(v)), reps)


def neutral_pool(S, below: float) -> np.ndarray:
    """Training sentences with neutral labels; the spoken ones when there are any
    (their ASR transcript is what flow 2 hears)."""
    neutral = np.abs(S.labels) < below
    spoken = neutral & (S.speech >= 0)
    return np.flatnonzero(spoken if spoken.any() else neutral)


def clip_inputs(
    v: RealVoices,
    k: int,
    S,
    pool: np.ndarray,
    rng: np.random.Generator,
    cfg: TrainConfig,
    rv: RealVoicesConfig,
) -> tuple[FusionInputs, FusionInputs, str]:
    """Flow 1 and flow 2 inputs of clip ``k`` (training), and which text it got."""
    from edge_msa.training.fusion.flows import _drop_frames

    audio = v.audio[k].astype(np.float32)
    audio = _drop_frames(audio, rng.uniform(0, cfg.max_frame_drop), rng)
    if audio is None:  # keep at least one frame: never a text-only clip row
        audio = v.audio[k][:1].astype(np.float32)
    voice = v.voice_probs[k]
    variant = rng.choice(3, p=[rv.p_own_text, rv.p_neutral_text, rv.p_no_text])
    if variant == 1 and len(pool):
        j = int(pool[rng.integers(len(pool))])
        teacher_text, s = S.text[j], int(S.speech[j])
        state = str(S.asr_state[s]) if s >= 0 else "simulated"
        heard = S.asr_text[s] if s >= 0 else S.text[j]
        kind = "neutral"
    else:
        teacher_text, state, heard = v.text[k], str(v.asr_state[k]), v.asr_text[k]
        kind = "none" if variant == 2 else "own"
    if variant == 2 or rng.random() < cfg.p_text_absent:
        state = "absent"
    student_text = heard if state != "absent" else None
    teacher = FusionInputs(text=teacher_text, audio=audio, voice=voice)
    student = FusionInputs(
        text=student_text, simulated=student_text is not None, audio=audio, voice=voice
    )
    return teacher, student, kind


def valid_feeds(v: RealVoices) -> dict[str, tuple[dict, np.ndarray]]:
    """Held-out actors as the runtime hears them: the clip's ASR transcript (or
    none), its voice (out of fold), no face."""
    from edge_msa.fusion.features import batch

    asr, absent = [], []
    for k in range(len(v)):
        audio, voice = v.audio[k].astype(np.float32), v.voice_probs[k]
        text = v.asr_text[k] if str(v.asr_state[k]) != "absent" else None
        asr.append(FusionInputs(text=text, simulated=text is not None, audio=audio, voice=voice))
        absent.append(FusionInputs(audio=audio, voice=voice))
    return {"asr": (batch(asr), v.labels), "absent": (batch(absent), v.labels)}


def valence_metrics(pred: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Balanced accuracy of 3-class valence (the runtime's +-0.5 polarity
    thresholds) and of positive vs negative (the score's sign, on non-neutral)."""

    def bacc(true: np.ndarray, guess: np.ndarray) -> float:
        return float(np.mean([np.mean(guess[true == c] == c) for c in np.unique(true)]))

    out = {"bacc_3class": bacc(np.sign(y), np.where(pred >= 0.5, 1, np.where(pred <= -0.5, -1, 0)))}
    nz = y != 0
    if nz.any():
        out["bacc_pos_neg"] = bacc(np.sign(y[nz]), np.where(pred[nz] >= 0, 1, -1))
    return out


def load_real_voices(cfg: TrainConfig, texts) -> tuple[RealVoices, RealVoices]:
    """(training, validation) clip rows: the clips heard (built when missing, one
    thread), out-of-fold probabilities from the voice bank, split by actor."""
    from edge_msa.data import banks, voices
    from edge_msa.training.settings import expand

    rv = cfg.data.real_voices
    assert rv is not None
    root = Path(cfg.data.root)
    clips = voices.ravdess_speech_clips(root / rv.ravdess)
    folder = (expand(rv.cache) if rv.cache else voices.default_cache()) / "ravdess"
    report = voices.build(clips, folder, threads=1, progress=False)
    if report["heard"] or report["reheard"]:
        log.info("real voices: %s", report)
    bank = banks.voice_bank(root)
    probs = voices.out_of_fold_probs(bank, banks.voice_clip_names(root))
    rows = make_rows(voices.load(folder, clips), probs, rv, texts)
    train, valid = split_actors(rows, rv.valid_actors)
    log.info("real voices: %d training clips, %d validation clips", len(train), len(valid))
    return train, valid
