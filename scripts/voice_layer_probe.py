"""Which layer of Whisper tiny's encoder carries the emotion (an experiment, not
the runtime): the shipped recogniser's weights read from its CTranslate2 file,
the encoder re-run in numpy (FP32) on exactly the runtime's mel window, and each
layer's output pooled like the voice embedding (mean and std over the audio's
frames, mean over those and the next 50). A logistic regression per layer on the
voice training's folds (grouped CV without the held-out people, no augmented
views) and one score on the held-out people of configs/voice.toml.

    OMP_NUM_THREADS=1 python scripts/voice_layer_probe.py            # about 5 minutes
    OMP_NUM_THREADS=1 python scripts/voice_layer_probe.py --views    # with the training's
        # augmented views in the training folds (about 15 minutes more)
"""

from __future__ import annotations

import argparse
from math import sqrt
from pathlib import Path

import numpy as np
from scipy.special import erf
from sklearn.linear_model import LogisticRegression
from voice_head_variants import fit, grouped_cv, probs_of  # scripts/, beside this one

from edge_msa.data.voice_augment import AUGMENTS, augment
from edge_msa.data.voice_corpus import (
    emodb_files,
    emodb_label,
    load_audio_16k,
    ravdess_training_clips,
)
from edge_msa.encoders.asr import SpeechRecognizer, clean_audio, duration_frames, encoder_window
from edge_msa.models import whisper_dir
from edge_msa.training.settings import expand, read_toml
from edge_msa.training.voice.config import VoiceConfig
from edge_msa.training.voice.select import corpus_scores, score_of
from edge_msa.training.voice.trunk import read_ct2
from edge_msa.types import VOICE_EMOTIONS

CONTEXT = 50
C_GRID = (0.01, 0.03)


class WhisperEncoderLayers:
    """Whisper's encoder in numpy: the output of every layer, then the final norm."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.w = weights
        self.heads = int(weights["encoder/num_heads"].ravel()[0])
        self.layers = sum(1 for k in weights if k.endswith("ffn/linear_0/weight"))

    def _conv(self, x: np.ndarray, name: str, stride: int) -> np.ndarray:
        weight, bias = self.w[f"encoder/{name}/weight"], self.w[f"encoder/{name}/bias"]
        padded = np.pad(x, ((0, 0), (1, 1)))
        steps = (x.shape[1] - 1) // stride + 1
        taps = [padded[:, k : k + stride * (steps - 1) + 1 : stride] for k in range(3)]
        return np.einsum("oik,itk->ot", weight, np.stack(taps, -1), optimize=True) + bias[:, None]

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        z = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
        return z * self.w[f"{name}/gamma"] + self.w[f"{name}/beta"]

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[f"{name}/weight"].T + self.w[f"{name}/bias"]

    def _attention(self, x: np.ndarray, name: str) -> np.ndarray:
        h = self.heads
        q, k, v = (
            t.reshape(len(x), h, -1).transpose(1, 0, 2)
            for t in np.split(self._linear(x, f"{name}/linear_0"), 3, axis=1)
        )
        a = q @ k.transpose(0, 2, 1) / sqrt(q.shape[-1])
        a = np.exp(a - a.max(-1, keepdims=True))
        mixed = (a / a.sum(-1, keepdims=True)) @ v
        return self._linear(mixed.transpose(1, 0, 2).reshape(len(x), -1), f"{name}/linear_1")

    def __call__(self, mel: np.ndarray) -> list[np.ndarray]:
        x = gelu(self._conv(mel, "conv1", 1))
        x = gelu(self._conv(x, "conv2", 2)).T
        x = x + self.w["encoder/position_encodings/encodings"][: len(x)]
        outputs = []
        for i in range(self.layers):
            p = f"encoder/layer_{i}"
            x = x + self._attention(self._norm(x, f"{p}/self_attention/layer_norm"),
                                    f"{p}/self_attention")
            hidden = gelu(self._linear(self._norm(x, f"{p}/ffn/layer_norm"), f"{p}/ffn/linear_0"))
            x = x + self._linear(hidden, f"{p}/ffn/linear_1")
            outputs.append(x)
        return outputs + [self._norm(x, "encoder/layer_norm")]


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + erf(x / sqrt(2)))


def runtime_mel(asr: SpeechRecognizer, audio: np.ndarray) -> np.ndarray:
    """The mel window ``SpeechRecognizer.recognition`` hands its encoder."""
    audio = clean_audio(audio)
    window = encoder_window(asr.model.feature_extractor(audio), asr.window.mel_frames(len(audio)))
    return np.asarray(window, np.float32)


def pooled_layers(files: list[Path], cache: Path, kind: str | None = None) -> np.ndarray:
    """(clips, layers + 1, 3 x 384) pooled outputs (of the ``kind`` view), cached."""
    if cache.exists():
        data = np.load(cache)
        if list(data["names"]) == [f.name for f in files]:
            return data["layers"]
    encoder = WhisperEncoderLayers(read_ct2(whisper_dir() / "model.bin"))
    asr = SpeechRecognizer(beam_size=1, threads=1)
    rows = []
    for path in files:
        audio = load_audio_16k(path)
        if kind:
            audio = augment(audio, kind, path.name)
        outputs = encoder(runtime_mel(asr, audio))
        n = min(duration_frames(audio.size), len(outputs[0]))
        rows.append([np.concatenate([o[:n].mean(0), o[:n].std(0), o[: n + CONTEXT].mean(0)])
                     for o in outputs])
    layers = np.asarray(rows, np.float32)
    np.savez(cache, names=np.array([f.name for f in files]), layers=layers)
    return layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--views", action="store_true", help="train with the augmented views")
    args = parser.parse_args()
    cfg = VoiceConfig(**read_toml("configs/voice.toml"))
    root = expand(cfg.data)
    emodb = emodb_files(root / "emodb")
    ravdess = ravdess_training_clips(root)
    files = emodb + [p for p, _, _ in ravdess]
    groups = np.array([emodb_label(f)[0] for f in emodb] + [g for _, g, _ in ravdess])
    labels = [emodb_label(f)[1] for f in emodb] + [e for _, _, e in ravdess]
    y = np.array([VOICE_EMOTIONS.index(e) for e in labels])
    corpus = np.array(["emodb"] * len(emodb) + ["ravdess"] * len(ravdess))
    cache = expand(cfg.cache)
    cache.mkdir(parents=True, exist_ok=True)
    layers = pooled_layers(files, cache / "encoder_layers.npz")
    augments = AUGMENTS if args.views else ()
    views = [pooled_layers(files, cache / f"encoder_layers_{k}.npz", k) for k in augments]
    held = np.isin(groups, list(cfg.holdout_speakers))
    names = [f"layer {i + 1}" for i in range(layers.shape[1] - 1)] + ["final norm (shipped)"]

    def pick(data: np.ndarray) -> dict[str, np.ndarray]:
        out = {name: data[:, i] for i, name in enumerate(names)}
        out["layer 2 + final norm"] = np.concatenate([data[:, 1], data[:, -1]], axis=1)
        return out

    sets, view_sets = pick(layers), [pick(v) for v in views]
    print("features | C | grouped CV: mean (per corpus) | held out: UAR per corpus")
    for name, x in sets.items():
        xv = [v[name][~held] for v in view_sets]
        for c in C_GRID:
            def head(c=c):
                return LogisticRegression(C=c, max_iter=3000)

            cv = grouped_cv(head, x[~held], xv, y[~held], groups[~held], corpus[~held], cfg.folds)
            model = fit(head, x[~held], xv, y[~held], corpus[~held])
            scores = corpus_scores(y[held], probs_of(model, x[held]), groups[held], corpus[held])
            parts = ", ".join(f"{k} {s['uar_mean']:.3f}" for k, s in cv.items())
            out = ", ".join(f"{k} {s['uar_pooled']:.3f}" for k, s in scores.items())
            print(f"{name} | {c} | {score_of(cv):.3f} ({parts}) | {out}", flush=True)


if __name__ == "__main__":
    main()
