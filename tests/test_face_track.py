import numpy as np

from edge_msa.runtime.face_track import FaceTrack
from edge_msa.types import FaceObservation


def obs(t: float, valence: float, quality: float = 1.0, happy: bool = True) -> FaceObservation:
    probs = np.zeros(7, np.float32)
    probs[3 if happy else 4] = 1.0
    return FaceObservation(t, (0, 0, 10, 10), quality, probs, np.zeros(8, np.float32), valence, 0.5)


def test_between_is_exactly_the_window():
    track = FaceTrack()
    for i in range(10):
        track.add(i * 0.1, obs(i * 0.1, float(i)))
    got = track.between(0.2, 0.5)
    assert [o.t for o in got] == [0.2, 0.30000000000000004, 0.4, 0.5]


def test_summary_weights_by_quality_and_needs_enough_faces():
    track = FaceTrack()
    track.add(1.0, obs(1.0, 2.0, quality=0.9))
    track.add(1.1, obs(1.1, -2.0, quality=0.1, happy=False))
    s = track.summary(0.0, 2.0)
    assert s is not None and abs(s.valence - 1.6) < 1e-6 and s.emotion == "happy"
    assert s.frames == 2 and s.with_face == 2
    for i in range(20):
        track.add(2.0 + i * 0.1, None)
    assert track.summary(1.0, 4.0) is None  # 2 faces in 22 frames: not a face in view


def test_old_frames_are_forgotten_and_time_stays_sorted():
    track = FaceTrack(keep_s=1.0)
    for i in range(50):
        track.add(i * 0.1, None)
    track.add(1.0, obs(1.0, 1.0))  # out of order: ignored
    assert len(track.between(0, 100)) == 11
