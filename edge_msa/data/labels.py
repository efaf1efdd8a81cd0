"""Read sentiment label files in the MOSI and MOSEI CSV layouts.

MOSI-style:  ``id,text,label,mode``
MOSEI-style: ``video_id,clip_id,text,label,mode`` (the MMSA raw-data layout)
MELD:        ``Utterance,Sentiment`` (and ``Dialogue_ID,Utterance_ID``), 3 classes;
             the split is the file name's first part (``dev_sent_emo.csv``: dev)
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

MOSI_COLUMNS = ("id", "text", "label", "mode")
MOSEI_COLUMNS = ("video_id", "clip_id", "text", "label", "mode")
MELD_COLUMNS = ("Utterance", "Sentiment")
# MELD's classes as scores. The 3-class measures compare ``sentiment`` with the
# published polarity; training (text and fusion) learns these values with L1,
# so a prediction lands on the side of the neutral band (0.5) where the median
# class is; 1.5 is also the RAVDESS valence the fusion learns.
MELD_SCORES = {"negative": -1.5, "neutral": 0.0, "positive": 1.5}


def meld_range(sentiment: str, polar_from: float = 1.0) -> tuple[float, float]:
    """A MELD class as a range of the score scale (``meld_target = "interval"`` in
    the text and fusion trainings): a prediction inside it costs nothing, so the
    classes do not pull every score towards one value. A polar class says the
    sign and "not neutral", not how strong: any score from ``polar_from`` on."""
    if sentiment == "neutral":
        return (-0.25, 0.25)
    return (polar_from, 3.0) if sentiment == "positive" else (-3.0, -polar_from)


MELD_RANGES = {s: meld_range(s) for s in MELD_SCORES}


@dataclass(frozen=True)
class LabelRow:
    id: str
    text: str
    label: float
    split: str
    sentiment: str | None = None  # 3-class labels (MELD): negative, neutral or positive
    emotion: str | None = None  # MELD's emotion (neutral, joy, surprise, anger, ...)

    def label_range(self, polar_from: float = 1.0) -> tuple[float, float]:
        """The scores the label allows: its class's range, or the score itself."""
        if self.sentiment is None:
            return (self.label, self.label)
        return meld_range(self.sentiment, polar_from)


def _row_id(row: dict[str, str], mosei_style: bool) -> str:
    if mosei_style:
        return f"{row['video_id']}_{row['clip_id']}"
    return row["id"]


def _check_header(path: Path, header: list[str]) -> bool:
    """Return True for the MOSEI layout, False for MOSI; raise otherwise."""
    present = set(header)
    if set(MOSEI_COLUMNS) <= present:
        return True
    if set(MOSI_COLUMNS) <= present:
        return False
    # Name what is missing against the closer of the two layouts, so the
    # message tells the user what to add.
    candidates = [MOSI_COLUMNS, MOSEI_COLUMNS]
    closest = min(candidates, key=lambda cols: len(set(cols) - present))
    missing = [c for c in closest if c not in present]
    raise ValueError(
        f"{path}: not a MOSI-style ({','.join(MOSI_COLUMNS)}) or MOSEI-style "
        f"({','.join(MOSEI_COLUMNS)}) label file; missing columns: {', '.join(missing)}"
    )


def read_labels(path: str | Path, split: str | None = None) -> list[LabelRow]:
    """All rows of ``path``, or only those whose ``mode`` equals ``split``."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if set(MELD_COLUMNS) <= set(reader.fieldnames or []):
            rows = _meld_rows(path, reader)
            return rows if split is None else [r for r in rows if r.split == split]
        mosei_style = _check_header(path, list(reader.fieldnames or []))
        rows = [
            LabelRow(
                id=_row_id(row, mosei_style),
                text=row["text"],
                label=float(row["label"]),
                split=row["mode"],
            )
            for row in reader
        ]
    if split is None:
        return rows
    return [r for r in rows if r.split == split]


def _meld_rows(path: Path, reader: csv.DictReader) -> list[LabelRow]:
    split = path.name.split("_")[0] if "_" in path.name else "all"
    rows = []
    for i, row in enumerate(reader):
        sentiment = row["Sentiment"].strip().lower()
        if sentiment not in MELD_SCORES:
            raise ValueError(f"{path} line {i + 2}: Sentiment {row['Sentiment']!r} is not "
                             "negative, neutral or positive")
        emotion = (row.get("Emotion") or "").strip().lower() or None
        score = MELD_SCORES[sentiment]
        rows.append(LabelRow(meld_id(row, i), row["Utterance"], score, split, sentiment, emotion))
    return rows


def meld_id(row: dict[str, str], i: int) -> str:
    """``meld0000012_3``: dialogue 12, utterance 3. The first 11 characters name
    the dialogue, as a YouTube id names a MOSI video, so cross-fitting folds
    (:mod:`edge_msa.data.folds`) keep a dialogue together."""
    dialogue = row.get("Dialogue_ID") or ""
    if not dialogue.isdigit():
        return f"meld_row{i:06d}"
    return f"meld{int(dialogue):07d}_{row.get('Utterance_ID', i)}"


def split_names(path: str | Path) -> list[str]:
    """The distinct split names in file order, for error messages and CLIs."""
    seen: dict[str, None] = {}
    for row in read_labels(path):
        seen.setdefault(row.split, None)
    return list(seen)
