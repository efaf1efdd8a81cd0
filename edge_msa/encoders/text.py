"""Text sentiment encoder: fine-tuned MiniLM-L6 in ONNX Runtime.

No torch or transformers at run time: the tokenizer is ``tokenizers`` reading
the shipped ``tokenizer.json`` and the graph runs through
:func:`edge_msa.backends.create_session`. The graph returns the sentence
embedding, a clipped mean score and an uncalibrated log-variance; the
temperature fitted on the dev sets (``manifest.json``) turns the latter into
a standard deviation.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edge_msa.models import load_manifest
from edge_msa.models import model_dir as models_subdir
from edge_msa.types import TextPrediction

PAD_ID = 0


def default_model_dir() -> Path:
    return models_subdir("text")


# Typographic punctuation (MELD's subtitles) as the plain ASCII that ASR writes.
_PLAIN = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"',
                        "\u2026": "...", "\u2014": " - ", "\u2013": " - "})


def normalise_text(text: str) -> str:
    # The one normalisation: the text training imports it (edge_msa.training.text.data).
    # MOSI training text is lower-case and ASR output arrives in any case, so case
    # carries no signal here.
    return " ".join(text.translate(_PLAIN).lower().split())




class TextEncoder:
    """Sentence -> (embedding, mean, std) with the shipped INT8 graph."""

    def __init__(self, model_dir: Path, backend: str = "cpu", threads: int = 1) -> None:
        from tokenizers import Tokenizer

        from edge_msa.backends import create_session, model_file

        model_dir = Path(model_dir)
        manifest = load_manifest(model_dir, "edge-msa train text --config configs/text.toml")
        self.model_dir = model_dir
        self.name = f"{manifest['name']}@{manifest['version']}"
        self.max_len = int(manifest["max_len"])
        self.temperature = float(manifest["temperature"])
        self._tokenizer = Tokenizer.from_file(str(model_dir / manifest["tokenizer"]))
        # Truncate exactly as in training; pad per batch ourselves so a
        # single sentence is not padded to max_len.
        self._tokenizer.enable_truncation(max_length=self.max_len)
        self._tokenizer.no_padding()
        # The backend's graph: dynamic INT8 on the CPU, the TensorRT-ready one on a GPU.
        self.graph = model_file(model_dir, manifest, backend)
        self._session = create_session(
            self.graph, backend, threads, warmup=self._feed(["warm up"])
        )

    def _encode(self, texts: list[str]) -> list[list[int]]:
        encodings = self._tokenizer.encode_batch([normalise_text(t) for t in texts])
        return [e.ids for e in encodings]

    @staticmethod
    def _pad(seqs: list[list[int]]) -> dict[str, np.ndarray]:
        width = max(len(s) for s in seqs)
        ids = np.full((len(seqs), width), PAD_ID, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def _feed(self, texts: list[str]) -> dict[str, np.ndarray]:
        return self._pad(self._encode(texts))

    def _run(self, feed: dict[str, np.ndarray], with_std: bool = True) -> list[TextPrediction]:
        names = ["embedding", "mean", "log_var"] if with_std else ["embedding", "mean"]
        embedding, mean, *log_var = self._session.run(names, feed)
        return [
            TextPrediction(
                embedding=np.asarray(embedding[i], dtype=np.float32),
                mean=float(mean[i]),
                std=math.sqrt(math.exp(float(log_var[0][i]))) * self.temperature
                if with_std
                else None,
            )
            for i in range(len(mean))
        ]

    def predict(self, text: str, with_std: bool = True) -> TextPrediction:
        """``with_std``: also the model's own std (the evaluation's; the runtime's
        fusion model reads the embedding and the score only)."""
        return self._run(self._feed([text]), with_std)[0]

    def predict_batch(self, texts: list[str], batch_size: int = 32) -> list[TextPrediction]:
        """Predictions in input order; batches group similar lengths."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        seqs = self._encode(texts)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        out: list[TextPrediction | None] = [None] * len(seqs)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            preds = self._run(self._pad([seqs[i] for i in idx]))
            for i, p in zip(idx, preds, strict=True):
                out[i] = p
        return [p for p in out if p is not None]
