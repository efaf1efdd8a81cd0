"""The v0 baseline, which lives only in evaluation: the branches' own
estimates (text model's std, voice and face valence) that the runtime no
longer computes, fused by inverse variance, on the real shipped models."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edge_msa.evaluation.baselines import VOICE_VALENCE, VoiceValence, face_valence
from edge_msa.fusion.features import FusionInputs, vision_tokens
from edge_msa.types import FACE_EMOTIONS, VOICE_EMOTIONS


def one_hot(names: tuple[str, ...], name: str) -> np.ndarray:
    return np.eye(len(names), dtype=np.float32)[names.index(name)]


def test_voice_valence_reads_the_shipped_heads_manifest():
    shipped = VoiceValence.shipped()
    assert dict(zip(VOICE_EMOTIONS, shipped.valence, strict=True)) == VOICE_VALENCE
    mean, std = shipped(one_hot(VOICE_EMOTIONS, "happiness"))
    assert mean == pytest.approx(2.0) and std == pytest.approx(shipped.base_std)
    mean, std = shipped(np.full(7, 1 / 7))
    assert -1.0 < mean < 0.0 and std > shipped.base_std


def test_baseline_fuses_the_branches_own_estimates():
    from edge_msa.encoders.text import TextEncoder, default_model_dir
    from edge_msa.evaluation.fusion_eval import _baseline_runner

    run = _baseline_runner(SimpleNamespace(encoder=TextEncoder(default_model_dir())))
    happy_face = vision_tokens(np.zeros((4, 128), np.float32),
                               np.tile(one_hot(FACE_EMOTIONS, "happy"), (4, 1)))
    items = [
        FusionInputs(),  # nothing: the prior
        FusionInputs(vision=happy_face),
        FusionInputs(audio=np.zeros((3, 384), np.float32),
                     voice=one_hot(VOICE_EMOTIONS, "anger")),
        FusionInputs(),
    ]
    sentences = [None, None, None, "this was a terrible boring film and i hated it"]
    mean, std = run(items, sentences)
    assert mean[0] == 0.0 and std[0] == 1.5
    assert mean[1] == pytest.approx(face_valence(one_hot(FACE_EMOTIONS, "happy"))[0])
    assert mean[2] < -1.0 and mean[3] < -1.0
    assert np.all(std > 0)
