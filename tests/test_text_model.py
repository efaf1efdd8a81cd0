"""Text sentiment model: metrics, label files and the shipped INT8 graph."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from edge_msa.data.labels import LabelRow, read_labels
from edge_msa.data.metrics import regression_metrics
from edge_msa.encoders.text import TextEncoder, default_model_dir
from edge_msa.evaluation.fusion_eval import evaluate_text
from edge_msa.evaluation.report import format_table

REPO = Path(__file__).resolve().parents[1]

# One zero label (index 1) so non-zero Acc-2 and has-zero Acc-2 differ.
PRED = [1.2, -0.4, 0.3, -2.4, 0.1]
TRUTH = [1.0, 0.0, -0.5, -3.0, 0.6]


def test_metrics_match_hand_computed_values() -> None:
    m = regression_metrics(PRED, TRUTH)
    assert m["n"] == 5
    assert m["mae"] == pytest.approx((0.2 + 0.4 + 0.8 + 0.6 + 0.5) / 5)
    # Non-zero: indices 0, 2, 3, 4 -> signs agree on 0, 3, 4.
    assert m["acc2"] == pytest.approx(3 / 4)
    # Has-zero: pred >= 0 [T F T F T] vs truth >= 0 [T T F F T].
    assert m["acc2_has0"] == pytest.approx(3 / 5)
    # Non-zero truth [T F F T], pred [T T F T]: F1(T) = 4/5 and F1(F) = 2/3,
    # both with support 2.
    assert m["f1"] == pytest.approx((0.8 * 2 + (2 / 3) * 2) / 4)
    # Clipped to [-2, 2] index 3 matches (-2 vs -2); only index 4 misses.
    assert m["acc5"] == pytest.approx(4 / 5)
    # Clipped to [-3, 3] round(-2.4) = -2 vs -3 misses as well.
    assert m["acc7"] == pytest.approx(3 / 5)
    assert m["corr"] == pytest.approx(float(np.corrcoef(PRED, TRUTH)[0, 1]))


def test_metrics_reject_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="pred has 2"):
        regression_metrics([0.1, 0.2], [0.1])


def test_format_table_lists_metrics() -> None:
    table = format_table({"file": "x.csv", "split": "dev", **regression_metrics(PRED, TRUTH)})
    assert "x.csv" in table
    assert "acc2_has0" in table
    assert "0.6000" in table


# ---------------------------------------------------------------- labels


def test_read_mosi_style(tmp_path: Path) -> None:
    path = tmp_path / "label.csv"
    path.write_text(
        'id,text,label,mode\nvid_1,"good, really",2.4,train\nvid_2,bad,-1.0,dev\n',
        encoding="utf-8",
    )
    assert read_labels(path) == [
        LabelRow("vid_1", "good, really", 2.4, "train"),
        LabelRow("vid_2", "bad", -1.0, "dev"),
    ]
    assert [r.id for r in read_labels(path, "dev")] == ["vid_2"]


def test_read_mosei_style(tmp_path: Path) -> None:
    path = tmp_path / "label.csv"
    path.write_text(
        "video_id,clip_id,text,label,mode\n-3g5y,82_7645,Key is part.,1.0,train\n"
        "abc,3,Fine.,0.0,valid\n",
        encoding="utf-8",
    )
    rows = read_labels(path, "valid")
    assert rows == [LabelRow("abc_3", "Fine.", 0.0, "valid")]
    assert read_labels(path)[0].id == "-3g5y_82_7645"


def test_bad_header_names_file_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "weird.csv"
    path.write_text("id,sentence,label\nx,hi,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"weird\.csv.*missing columns: text, mode"):
        read_labels(path)


# ---------------------------------------------------------------- model


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(default_model_dir())


def test_default_model_dir_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_MSA_MODELS", raising=False)
    assert default_model_dir() == REPO / "models" / "text"
    monkeypatch.setenv("EDGE_MSA_MODELS", "/opt/models")
    assert default_model_dir() == Path("/opt/models/text")


def test_clear_sentiment_signs(encoder: TextEncoder) -> None:
    pos = encoder.predict("This movie was absolutely wonderful, I loved every minute of it!")
    neg = encoder.predict("this was a terrible boring film and i hated it")
    assert pos.mean > 0.5
    assert neg.mean < -0.5


def test_prediction_shape_and_uncertainty(encoder: TextEncoder) -> None:
    for text in ("it was okay i guess", ""):
        p = encoder.predict(text)
        assert p.embedding.shape == (384,)
        assert p.embedding.dtype == np.float32
        assert np.all(np.isfinite(p.embedding))
        assert -3.0 <= p.mean <= 3.0
        assert p.std > 0 and math.isfinite(p.std)


def test_batch_matches_single(encoder: TextEncoder) -> None:
    texts = [
        "i really enjoyed the acting",
        "the plot made no sense at all and it dragged on for far too long",
        "meh",
    ]
    singles = [encoder.predict(t) for t in texts]
    batch = encoder.predict_batch(texts, batch_size=2)
    assert len(batch) == len(texts)
    # Dynamic INT8 derives activation scales from the whole batch, so batched
    # outputs drift a little from batch-1 ones; order must still hold.
    for s, b in zip(singles, batch, strict=True):
        assert b.mean == pytest.approx(s.mean, abs=0.15)
        assert (
            float(np.dot(s.embedding, b.embedding))
            / (np.linalg.norm(s.embedding) * np.linalg.norm(b.embedding))
            > 0.95
        )
    one = encoder.predict_batch([texts[1]])[0]
    assert one.mean == pytest.approx(singles[1].mean, abs=1e-6)
    assert np.allclose(one.embedding, singles[1].embedding, atol=1e-6)


# ---------------------------------------------------------------- data


def _data_dir() -> Path:
    return Path(os.environ.get("EDGE_MSA_DATA", REPO.parent / "shared" / "datasets"))


@pytest.mark.data
def test_mosi_dev_meets_targets() -> None:
    labels = _data_dir() / "mosi" / "label.csv"
    if not labels.is_file():
        pytest.skip(f"{labels} not found (set EDGE_MSA_DATA to the datasets folder)")
    encoder = evaluate_text(labels, "dev", encoder_only=True)
    fused = evaluate_text(labels, "dev")
    assert encoder["n"] == fused["n"] == 229
    assert encoder["mae"] <= 1.0 and encoder["acc2"] >= 0.77
    # The fusion model, given only the text, must not lose what the text encoder knew.
    assert fused["mae"] <= encoder["mae"] + 0.02 and fused["acc2"] >= 0.77
    assert 0.55 <= fused["coverage_1sigma"] <= 0.8
