"""The text training's data: label files, the spoken corpus's recognised
transcripts, the tokenizer and length-bucketed batches.

Text is normalised by the runtime's own :func:`edge_msa.encoders.text.normalise_text`
so training and serving cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from edge_msa.config import ConfigError
from edge_msa.data.class_metrics import POLARITIES
from edge_msa.data.folds import fold_of
from edge_msa.data.labels import LabelRow, read_labels
from edge_msa.encoders.text import PAD_ID, normalise_text

MELD_SENTIMENTS = POLARITIES  # MELD's classes are the polarities the runtime publishes
MELD_EMOTIONS = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")


@dataclass
class Split:
    name: str
    file: str
    split: str
    texts: list[str]
    labels: np.ndarray
    ids: list[list[int]]
    # MELD rows: the 3-class sentiment and the emotion (indices into MELD_SENTIMENTS
    # and MELD_EMOTIONS), -1 for rows with a score label.
    sentiment: np.ndarray | None = None
    emotion: np.ndarray | None = None

    @property
    def is_3class(self) -> bool:
        return self.sentiment is not None and bool(np.all(self.sentiment >= 0))

    def extend(self, other: Split) -> None:
        n, m = len(self.ids), len(other.ids)
        self.sentiment = _join(self.sentiment, other.sentiment, n, m)
        self.emotion = _join(self.emotion, other.emotion, n, m)
        self.texts = self.texts + other.texts
        self.labels = np.concatenate([self.labels, other.labels])
        self.ids = self.ids + other.ids


def _join(a: np.ndarray | None, b: np.ndarray | None, n: int, m: int) -> np.ndarray | None:
    if a is None and b is None:
        return None
    a = np.full(n, -1, np.int64) if a is None else a
    b = np.full(m, -1, np.int64) if b is None else b
    return np.concatenate([a, b])


def load_split(data: Path, rel: str, split: str, limit: int | None) -> tuple[list[LabelRow], str]:
    path = data / rel
    if not path.is_file():
        raise ConfigError(
            f"data: {path} not found; set `data` in the config (or EDGE_MSA_DATA) to the "
            "folder that holds mosi/label.csv and mosei/label.csv"
        )
    rows = read_labels(path, split)
    if not rows:
        raise ConfigError(f"{path}: no rows with mode == {split!r}")
    if limit is not None:
        rows = rows[:limit]
    return rows, rel


def make_tokenizer(base: Path, max_len: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(base / "tokenizer.json"))
    tok.enable_truncation(max_length=max_len)
    # Padding is done per batch (to the longest row) by the caller.
    tok.no_padding()
    return tok


def build_split(name: str, rows: list[LabelRow], rel: str, split: str, tok) -> Split:
    texts = [normalise_text(r.text) for r in rows]
    ids = [e.ids for e in tok.encode_batch(texts)]
    labels = np.array([r.label for r in rows], dtype=np.float32)
    return Split(name=name, file=rel, split=split, texts=texts, labels=labels, ids=ids)


def pad_batch(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def bucketed_batches(
    seqs: list[list[int]], size: int, rng: np.random.Generator, pool: int = 50
) -> list[np.ndarray]:
    """Random batches of similar length: shuffle, sort within pools, shuffle batches.

    Random batches on this data are padded to max_len most of the time;
    grouping by length roughly halves the tokens per step on a CPU.
    """
    order = rng.permutation(len(seqs))
    batches = []
    for start in range(0, len(order), size * pool):
        chunk = sorted(order[start : start + size * pool], key=lambda i: len(seqs[i]))
        batches += [np.array(chunk[j : j + size]) for j in range(0, len(chunk), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def length_sorted_batches(seqs: list[list[int]], size: int) -> Iterator[list[int]]:
    # Inference only: grouping similar lengths cuts padding work a lot.
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for start in range(0, len(order), size):
        yield order[start : start + size]


def load_data(args: SimpleNamespace, tok) -> tuple[Split, list[Split], dict]:
    specs = [
        ("mosei_train", "mosei/label.csv", "train"),
        ("mosi_train", "mosi/label.csv", "train"),
        ("mosi_dev", "mosi/label.csv", "dev"),
        ("mosei_valid", "mosei/label.csv", "valid"),
    ]
    splits = {}
    for name, rel, split in specs:
        rows, rel = load_split(args.data, rel, split, args.limit)
        if split == "train":
            rows = [r for r in rows if keep_row(args, r.id)]
        splits[name] = build_split(name, rows, rel, split, tok)
    if args.meld:
        splits["meld_train"] = meld_split(args, "train", tok)
        splits["meld_dev"] = meld_split(args, "dev", tok)
    train = Split("train", "", "train", [], np.zeros(0, np.float32), [])
    for name in ("mosei_train", "mosi_train", "meld_train"):
        if name in splits:
            train.extend(splits[name])
    train.file = "+".join(splits[n].file for n in splits if n.endswith("_train"))
    info = {
        name: {"file": s.file, "split": s.split, "rows": len(s.ids)} for name, s in splits.items()
    }
    devs = [splits[n] for n in ("mosi_dev", "mosei_valid", "meld_dev") if n in splits]
    if args.asr_corpus:
        heard = [
            asr_split(args.asr_corpus, f"{n}_asr", rel, sp, tok, args) for n, rel, sp in specs[:3]
        ]
        for part in heard[:2]:
            train.extend(part)
        devs.append(heard[2])
        info.update({s.name: {"folder": s.file, "rows": len(s.ids)} for s in heard})
    truncated = sum(len(s) >= args.max_len for s in train.ids)
    info["train_rows_truncated_to_max_len"] = truncated
    return train, devs, info


def meld_split(args: SimpleNamespace, split: str, tok) -> Split:
    """MELD's utterances, their sentiment as a score (``MELD_SCORES``) and as a
    class, and their emotion. A fold model leaves out whole dialogues (``meld_id``)."""
    rel = f"meld/{split}_sent_emo.csv"
    path = args.data / rel
    if not path.is_file():
        raise ConfigError(f"meld: {path} not found; set meld = false or point `data` at it")
    rows = read_labels(path, split)[: args.limit]
    rows = [r for r in rows if split != "train" or keep_row(args, r.id)]
    built = build_split(f"meld_{split}", rows, rel, split, tok)
    built.sentiment = np.array([MELD_SENTIMENTS.index(r.sentiment) for r in rows], np.int64)
    built.emotion = np.array([MELD_EMOTIONS.index(r.emotion) for r in rows], np.int64)
    return built


def keep_row(args: SimpleNamespace, row_id: str) -> bool:
    """With --fold K/N, a training row is kept unless its video is in fold K."""
    return args.fold is None or fold_of(row_id, args.fold[1]) != args.fold[0]


def asr_split(
    corpus: Path, name: str, rel: str, split: str, tok, args: SimpleNamespace
) -> Split:
    """The spoken corpus's recognised transcripts of one split, with their labels.

    Whisper tiny.en gets about a quarter of the words of espeak-ng speech wrong;
    training on those transcripts too teaches the encoder what they look like."""
    folder = corpus / Path(rel).parent.name / split
    texts, labels = [], []
    for f in sorted(folder.glob("*.npz")):
        with np.load(f) as z:
            if split == "train" and args.fold and not keep_row(args, str(z["id"])):
                continue
            if str(z["asr_state"]) != "absent":
                texts.append(normalise_text(str(z["asr_text"])))
                labels.append(float(z["label"]))
    if not texts:
        raise ConfigError(
            f"stages.asr_corpus: {folder} holds no recognised transcripts "
            "(build it with edge-msa corpus spoken)"
        )
    ids = [e.ids for e in tok.encode_batch(texts)]
    return Split(name, str(folder), split, texts, np.array(labels, np.float32), ids)
