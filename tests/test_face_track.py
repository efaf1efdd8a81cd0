import numpy as np

from edge_msa.runtime.face_track import FaceTrack
from edge_msa.types import FaceObservation


def obs(t: float, quality: float = 1.0, happy: bool = True) -> FaceObservation:
    probs = np.zeros(7, np.float32)
    probs[3 if happy else 4] = 1.0
    return FaceObservation(t, (0, 0, 10, 10), quality, probs, np.zeros(8, np.float32))


def test_between_is_exactly_the_window():
    track = FaceTrack()
    for i in range(10):
        track.add(i * 0.1, obs(i * 0.1))
    got = track.between(0.2, 0.5)
    assert [o.t for o in got] == [0.2, 0.30000000000000004, 0.4, 0.5]


def test_summary_weights_by_quality_and_needs_enough_faces():
    track = FaceTrack()
    track.add(1.0, obs(1.0, quality=0.9))
    track.add(1.1, obs(1.1, quality=0.1, happy=False))
    track.add(1.2, obs(1.2, quality=0.1, happy=False))
    s = track.summary(0.0, 2.0)
    # Two sad frames of a poor face, one happy of a good one: the good one wins.
    assert s is not None and s.emotion == "happy"
    assert s.frames == 3 and s.with_face == 3 and s.tokens.shape == (3, 8 + 7)
    for i in range(20):
        track.add(2.0 + i * 0.1, None)
    assert track.summary(1.0, 4.0) is None  # 3 faces in 23 frames: not a face in view


def test_failed_frames_are_counted_apart_from_the_analysed_ones():
    track = FaceTrack()
    track.add(1.0, obs(1.0))
    track.add_failure(1.1)
    track.add_failure(1.2)
    assert track.failures(0.0, 2.0) == (2, 3)
    assert track.failures(1.05, 2.0) == (2, 2)  # every frame given there failed
    assert track.failures(3.0, 4.0) == (0, 0)
    s = track.summary(0.0, 2.0)
    assert s is not None and s.frames == 1  # a failed frame is not an analysed one


def test_old_frames_are_forgotten_and_time_stays_sorted():
    track = FaceTrack(keep_s=1.0)
    for i in range(50):
        track.add(i * 0.1, None)
    track.add(1.0, obs(1.0))  # out of order: ignored
    assert len(track.between(0, 100)) == 11
