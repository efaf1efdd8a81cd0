"""Face stage on real models and real images.

Data-set tests skip cleanly without EDGE_MSA_DATA (see conftest.need_data);
skimage's astronaut ships with scikit-image, so the rest always runs.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from edge_msa.evaluation.face_eval import classification_metrics, format_face_table
from edge_msa.types import FACE_EMOTIONS, VideoFrame
from edge_msa.vision import (
    Detection,
    ExpressionModel,
    FaceDetector,
    FaceStage,
    PrimaryFaceTracker,
)
from edge_msa.vision.tracker import iou
from tests.conftest import REPO, need_data

MODEL_DIR = REPO / "models" / "face"
# The shipped INT8 model (0.4.0, flip-averaged in the graph) scores 0.704 on this
# 500-face PublicTest subset (0.692 on the whole split, models/face/manifest.json;
# 0.3.0 0.696, the model before issue 19 0.616); the floor leaves
# room for a retrained model without letting a broken one, or an older one, through.
SUBSET_ACCURACY_FLOOR = 0.67


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def expression() -> ExpressionModel:
    return ExpressionModel()


@pytest.fixture()
def stage(detector: FaceDetector, expression: ExpressionModel) -> FaceStage:
    return FaceStage(detector, PrimaryFaceTracker(), expression)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)


def test_detector_is_centerface(detector: FaceDetector) -> None:
    # The shipped detector; Haar is only the fallback (see detector.py).
    assert detector.kind == "centerface"


def test_multi_face_photo_finds_all_five(detector: FaceDetector) -> None:
    image = cv2.imread(str(need_data("media", "multi_face.jpg")))
    found = detector.detect(image)
    assert len(found) == 5
    # Face centres read off the photo (1000x667): each matched by one box.
    centres = [(264, 107), (364, 300), (476, 250), (583, 379), (736, 350)]
    for cx, cy in centres:
        assert any(x <= cx <= x + w and y <= cy <= y + h for (x, y, w, h), _ in _pairs(found))


def _pairs(found: list[Detection]) -> list[tuple[tuple[int, int, int, int], float]]:
    return [(d.box, d.score) for d in found]


def test_astronaut_gives_one_valid_observation(
    detector: FaceDetector, stage: FaceStage, astronaut: np.ndarray
) -> None:
    assert len(detector.detect(astronaut)) == 1
    obs = stage.process(VideoFrame(astronaut, 1.5))
    assert obs is not None
    assert obs.t == 1.5
    x, y, w, h = obs.box
    assert x >= 0 and y >= 0 and x + w <= astronaut.shape[1] and y + h <= astronaut.shape[0]
    assert obs.probs.shape == (len(FACE_EMOTIONS),) and obs.probs.dtype == np.float32
    assert abs(float(obs.probs.sum()) - 1.0) < 1e-4
    assert obs.embedding.ndim == 1 and obs.embedding.shape[0] == stage.expression.embedding_dim
    assert 0.0 <= obs.quality <= 1.0
    # Eileen Collins smiles in this portrait.
    assert FACE_EMOTIONS[int(obs.probs.argmax())] == "happy"


def test_grey_scale_frame_still_works(stage: FaceStage, astronaut: np.ndarray) -> None:
    grey = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    assert stage.process(VideoFrame(grey, 0.0)) is not None


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((0, 0, 3), np.uint8),
        np.full((480, 640, 3), 128, np.uint8),
        np.zeros((8, 8, 3), np.uint8),
        np.zeros((3000, 4000, 3), np.uint8),
        np.zeros((5,), np.uint8),
    ],
    ids=["empty", "grey", "tiny", "huge", "1-d"],
)
def test_bad_frames_give_none(stage: FaceStage, image: np.ndarray) -> None:
    assert stage.process(VideoFrame(image, 0.0)) is None


def test_tracker_keeps_primary_when_a_second_face_appears() -> None:
    tracker = PrimaryFaceTracker()
    primary = Detection((300, 150, 100, 120), 0.9)
    assert tracker.update([primary], 640, 480) == primary
    for step in range(1, 6):
        moved = Detection((300 + 4 * step, 150, 100, 120), 0.8)
        # A smaller face nearer the centre, then a bigger one at the edge.
        newcomer = (
            Detection((280, 260, 60, 70), 0.95) if step < 3 else Detection((0, 0, 180, 200), 0.99)
        )
        assert tracker.update([newcomer, moved], 640, 480) == moved


def test_tracker_picks_the_prominent_face_and_moves_on_when_it_is_gone() -> None:
    tracker = PrimaryFaceTracker(max_missed=2)
    big_central = Detection((270, 190, 100, 100), 0.6)
    small_edge = Detection((0, 0, 50, 50), 0.99)
    assert tracker.update([small_edge, big_central], 640, 480) == big_central
    # Gone for max_missed frames: wait rather than jump.
    assert tracker.update([small_edge], 640, 480) is None
    assert tracker.update([small_edge], 640, 480) is None
    assert tracker.update([small_edge], 640, 480) == small_edge


def test_stage_keeps_the_primary_face_on_real_frames(
    stage: FaceStage, astronaut: np.ndarray
) -> None:
    face = astronaut[40:200, 160:300]
    canvas = np.full((480, 960, 3), 90, np.uint8)
    canvas[150:310, 420:560] = face
    first = stage.process(VideoFrame(canvas, 0.0))
    assert first is not None
    # A second, smaller face appears at the side.
    small = cv2.resize(face, (100, 114))
    canvas[60:174, 100:200] = small
    for t in (0.1, 0.2, 0.3):
        obs = stage.process(VideoFrame(canvas, t))
        assert obs is not None and iou(obs.box, first.box) > 0.8


def test_detect_near_finds_the_face_in_frame_pixels(
    detector: FaceDetector, astronaut: np.ndarray
) -> None:
    (full,) = detector.detect(astronaut)
    x, y, w, h = full.box
    for dx, dy in ((0, 0), (25, -15)):  # the face as tracked, and moved since
        near = detector.detect_near(astronaut, (x + dx, y + dy, w, h))
        assert near and iou(near[0].box, full.box) > 0.7


def test_stage_follows_a_moving_face_between_full_searches(
    detector: FaceDetector, expression: ExpressionModel, astronaut: np.ndarray
) -> None:
    face = astronaut[40:200, 160:300]
    stage = FaceStage(detector, PrimaryFaceTracker(), expression, full_every=5)
    for step in range(12):
        canvas = np.full((480, 640, 3), 90, np.uint8)
        x = 100 + 30 * step
        canvas[150:310, x : x + 140] = face
        obs = stage.process(VideoFrame(canvas, step / 10))
        assert obs is not None, step
        bx, by, bw, bh = obs.box
        # The box stays on the pasted face as it slides across the frame.
        assert x <= bx + bw / 2 <= x + 140 and 150 <= by + bh / 2 <= 310, (step, obs.box)


def test_valence_mapping() -> None:
    """The v0 baseline's face valence (evaluation only: the runtime has none)."""
    from edge_msa.evaluation.baselines import face_valence

    happy = np.eye(len(FACE_EMOTIONS), dtype=np.float32)[FACE_EMOTIONS.index("happy")]
    mean, std = face_valence(happy)
    assert mean == pytest.approx(2.0) and std == pytest.approx(1.0)
    uniform = np.full(len(FACE_EMOTIONS), 1 / len(FACE_EMOTIONS), np.float32)
    u_mean, u_std = face_valence(uniform)
    assert u_std > std and -1.0 < u_mean < 0.0


def test_metrics_and_table() -> None:
    truth = np.array([0, 1, 2, 3, 3, 6])
    pred = np.array([0, 0, 2, 3, 6, 6])
    m = classification_metrics(truth, pred)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class_recall"]["disgust"] == 0.0 and m["per_class_recall"]["happy"] == 0.5
    m.update(ms_per_face=0.2, n=6)
    assert "accuracy" in format_face_table(m)


def _public_subset(n: int) -> tuple[np.ndarray, np.ndarray]:
    split = np.load(need_data("fer2013", "fer2013_PublicTest.npz"))
    # The npz is sorted by label: a random (fixed) subset, not the first n.
    idx = np.random.default_rng(0).choice(len(split["labels"]), n, replace=False)
    return split["images"][idx], split["labels"][idx]


def test_int8_agrees_with_fp32(expression: ExpressionModel) -> None:
    if not (MODEL_DIR / "expression.fp32.onnx").exists():
        pytest.skip("no FP32 export shipped")
    faces, _ = _public_subset(300)
    fp32 = ExpressionModel(MODEL_DIR, file="expression.fp32.onnx")
    agree = (
        fp32.predict_faces(faces)[0].argmax(1) == expression.predict_faces(faces)[0].argmax(1)
    ).mean()
    assert agree >= 0.9


def test_publictest_subset_accuracy(expression: ExpressionModel) -> None:
    faces, labels = _public_subset(500)
    accuracy = (expression.predict_faces(faces)[0].argmax(1) == labels).mean()
    assert accuracy >= SUBSET_ACCURACY_FLOOR


def _face_folder(root, astronaut: np.ndarray):
    """13 images with labels.csv: 12 views of the smiling astronaut (tilted,
    scaled, mirrored, shifted, in a larger frame), two of them labelled
    'sad' on purpose, and one frame with no face."""
    root.mkdir()
    face = astronaut[0:260, 120:340]
    rows = []
    for i, (degrees, scale, flip) in enumerate(
        [(0, 1.0, False), (10, 1.0, False), (-10, 1.0, True), (20, 0.8, False),
         (-20, 1.2, False), (5, 0.6, True), (0, 1.5, False), (-5, 0.9, True),
         (15, 1.0, True), (-15, 0.7, False), (0, 0.5, False), (8, 1.3, True)]
    ):
        canvas = np.full((480, 640, 3), 100 + 10 * (i % 5), np.uint8)
        view = cv2.resize(face, None, fx=scale, fy=scale)
        view = view[:, ::-1] if flip else view
        h, w = view.shape[:2]
        y, x = (480 - h) // 2, 120 + 20 * i
        canvas[y : y + h, x : x + w] = view
        matrix = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), degrees, 1.0)
        canvas = cv2.warpAffine(canvas, matrix, (640, 480), borderMode=cv2.BORDER_REPLICATE)
        cv2.imwrite(str(root / f"view{i:02d}.png"), canvas)
        rows.append(f"view{i:02d}.png,{'sad' if i in (3, 7) else 'happy'}")
    cv2.imwrite(str(root / "empty.jpg"), np.full((480, 640, 3), 128, np.uint8))
    rows.append("empty.jpg,neutral")
    (root / "labels.csv").write_text("path,emotion\n" + "\n".join(rows) + "\n")
    return root


def test_eval_face_folder_finds_and_aligns_as_the_runtime(tmp_path, astronaut) -> None:
    import json

    from tests.conftest import cli

    folder = _face_folder(tmp_path / "faces", astronaut)
    run = cli("eval", "face", "--folder", str(folder), "--crop", "both", "--json")
    assert run.returncode == 0, run.stderr
    results = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [m["crop"] for m in results] == ["square", "aligned"]
    for m in results:
        assert m["n"] == 13 and m["faces_found"] == 12 and m["detection_rate"] == round(12 / 13, 4)
        assert m["detector"] == "centerface" and m["ms_per_face"] > 0
    aligned = results[1]
    # Every view reads as happy: the ten labelled happy are right, the two
    # labelled sad are wrong, the empty frame is not counted.
    assert aligned["per_class_recall"]["happy"] == 1.0
    assert aligned["per_class_recall"]["sad"] == 0.0
    assert aligned["accuracy"] == round(10 / 12, 4)
    assert aligned["uar"] == 0.5  # happy 1.0, sad 0.0; classes absent are left out


def test_eval_face_folder_of_ready_crops_skips_the_detector(
    tmp_path, detector: FaceDetector, astronaut: np.ndarray
) -> None:
    import json

    from edge_msa.vision.align import align_face
    from tests.conftest import cli

    (found,) = detector.detect(astronaut)
    crop = align_face(astronaut, found, detector.crop_margin, True)  # 48x48 grey
    # The same smiling face as a grey 48x48 crop and two larger colour ones; one
    # labelled sad on purpose. No detector would find a face in a 48x48 image.
    cv2.imwrite(str(tmp_path / "a.png"), crop)
    big = cv2.cvtColor(cv2.resize(crop, (96, 96)), cv2.COLOR_GRAY2BGR)
    cv2.imwrite(str(tmp_path / "b.png"), big)
    cv2.imwrite(str(tmp_path / "c.jpg"), cv2.resize(big, (144, 144)))
    (tmp_path / "labels.csv").write_text("path,emotion\na.png,happy\nb.png,happy\nc.jpg,sad\n")
    run = cli("eval", "face", "--folder", str(tmp_path), "--crop", "none", "--json")
    assert run.returncode == 0, run.stderr
    (m,) = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert m["crop"] == "none" and m["n"] == 3 and "detection_rate" not in m
    assert m["per_class_recall"]["happy"] == 1.0 and m["per_class_recall"]["sad"] == 0.0
    assert m["accuracy"] == round(2 / 3, 4) and m["ms_per_face"] > 0


def test_face_folder_rejects_an_unknown_emotion(tmp_path) -> None:
    from edge_msa.evaluation.face_eval import read_face_folder

    (tmp_path / "labels.csv").write_text("path,emotion\na.png,Happy\nb.png,contempt\n")
    with pytest.raises(ValueError, match="contempt"):
        read_face_folder(tmp_path)


def test_stage_crop_follows_the_align_setting(
    detector: FaceDetector, expression: ExpressionModel, astronaut: np.ndarray
) -> None:
    tilted = cv2.warpAffine(
        astronaut, cv2.getRotationMatrix2D((230.0, 120.0), 25, 1.0), astronaut.shape[1::-1]
    )
    frame = VideoFrame(tilted, 0.0)
    aligned = FaceStage(detector, PrimaryFaceTracker(), expression).process(frame)
    square = FaceStage(detector, PrimaryFaceTracker(), expression, align=False).process(frame)
    assert aligned is not None and square is not None
    assert aligned.box == square.box
    assert not np.allclose(aligned.probs, square.probs, atol=1e-3)
