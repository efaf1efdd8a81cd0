"""Cross-fitting folds: which text model scores which training sentence."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edge_msa.config import ConfigError
from edge_msa.data.folds import fold_of, parse_fold, video_of
from edge_msa.data.joint import FoldedTextBank
from edge_msa.encoders.text import default_model_dir
from edge_msa.fusion.features import TEXT_DIM


def test_a_video_keeps_its_fold_across_clips_and_data_sets():
    assert video_of("-3g5yACwYnA_82_7645") == "-3g5yACwYnA"
    assert video_of("03bSnISJMiM_12") == "03bSnISJMiM"
    assert fold_of("03bSnISJMiM_1", 2) == fold_of("03bSnISJMiM_12", 2)
    rng = np.random.default_rng(0)
    alphabet = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
    videos = ["".join(rng.choice(alphabet, 11)) for _ in range(2000)]
    share = np.mean([fold_of(f"{v}_1", 2) for v in videos])
    assert 0.45 < share < 0.55  # the hash splits videos about evenly


def test_fold_spec_is_checked():
    assert parse_fold("1/3") == (1, 3)
    for bad in ("2/2", "0/1", "x", "1/2/3"):
        with pytest.raises(ValueError, match="fold"):
            parse_fold(bad)


def _fold_model(tmp_path: Path, index: int | None, count: int = 2) -> Path:
    """The shipped text model under a fold's manifest (the weights are linked)."""
    src = default_model_dir()
    out = Path(tempfile.mkdtemp(prefix=f"fold{index}_", dir=tmp_path))
    for f in src.iterdir():
        if f.name != "manifest.json":
            (out / f.name).symlink_to(f.resolve())
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["fold"] = None if index is None else {"index": index, "count": count}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_each_row_is_scored_by_the_model_that_never_saw_its_video(tmp_path):
    bank = FoldedTextBank([_fold_model(tmp_path, 1), _fold_model(tmp_path, 0)], tmp_path)
    ids = ["03bSnISJMiM_1", "-3g5yACwYnA_82_7645", "WKA5OygbEKI_3", "c5xsKMxpXnc_2"]
    folds = [fold_of(i, 2) for i in ids]
    assert set(folds) == {0, 1}, "the ids should cover both folds"
    # Tell the two (identical) models apart by what their caches hold.
    for k, b in bank.banks.items():
        b.rows["same words"] = np.full(TEXT_DIM, float(k), np.float32)
    out = bank.embed(["same words"] * len(ids), ids)
    assert out[:, 0].tolist() == [float(k) for k in folds]
    with pytest.raises(ValueError, match="row id"):
        bank.embed(["same words"])


def test_missing_or_unfolded_models_name_the_config_field(tmp_path):
    with pytest.raises(ConfigError, match="data.text_folds"):
        FoldedTextBank([_fold_model(tmp_path, 0)], tmp_path)  # fold 1 of 2 missing
    with pytest.raises(ConfigError, match="data.text_folds"):
        FoldedTextBank([_fold_model(tmp_path, 0), _fold_model(tmp_path, 0)], tmp_path)
    with pytest.raises(ConfigError, match="data.text_folds"):
        FoldedTextBank([_fold_model(tmp_path, 0), _fold_model(tmp_path, None)], tmp_path)
    with pytest.raises(ConfigError, match="train_text_fold.sh"):
        FoldedTextBank([_fold_model(tmp_path, 0), tmp_path / "not-there"], tmp_path)


def test_train_text_fold_keeps_the_other_folds_videos():
    pytest.importorskip("torch", reason="training needs the train extra (torch)")
    from edge_msa.training.settings import validate
    from edge_msa.training.text.config import TextConfig
    from edge_msa.training.text.data import keep_row

    args = TextConfig(fold="1/2").stage_args()[0]
    ids = ["03bSnISJMiM_1", "-3g5yACwYnA_82_7645", "WKA5OygbEKI_3", "c5xsKMxpXnc_2"]
    assert [keep_row(args, i) for i in ids] == [fold_of(i, 2) != 1 for i in ids]
    assert all(keep_row(TextConfig().stage_args()[0], i) for i in ids)
    with pytest.raises(ConfigError, match="fold"):
        validate(TextConfig, {"fold": "2/2"}, "text.toml")
