"""The face expression CNN's training on FER2013: ``edge-msa train face``.

Recipe (why each part is there):

- Net: a VGG-style CNN with BatchNorm, widths 32-64-128-256 with (1, 2, 2, 2)
  3x3 convolutions per stage, max-pooling after each stage, global average
  pooling, a linear projection to the 128-value embedding the fusion reads,
  dropout and a linear head: 1.20 M parameters, about 67 M multiply-adds per
  40x40 face (``configs/face.toml``; the 0.29 M net before issue 19 is
  ``configs/face-small.toml``). The budget is 1 ms per face on one core.
- Input: 40x40 crops of the 48x48 faces. One batched ``affine_grid`` draws
  the crop position (+-4 px), a small rotation (+-10 degrees), zoom
  (``zoom``, 0.9-1.1) and a horizontal flip together, then per-image standardisation
  (zero mean, unit variance: robust to camera exposure) and random erasing.
  With ``camera`` (a share of the faces), those faces are first seen as
  through another camera: lower resolution, blur or sharpening, a gamma curve
  and noise (``data.degrade``); FER2013 alone teaches a net that loses 10
  points to a 1 px blur. CutMix (``cutmix``) pastes a box of another face.
- Teachers (``teachers``, ``distill``): finished runs' softened probabilities
  on the clean view of the same face (distillation, ``distill``); ``init``
  starts from a finished run (a warm restart).
- Loss: cross-entropy with label smoothing 0.1 and mild class weights
  (n_c ** -0.3, normalised) so that 'disgust' (1.5 % of the data) gets
  predicted at all without giving up much accuracy.
- SGD, Nesterov momentum 0.9, weight decay 5e-4 (not on BN/bias), linear
  warm-up then cosine decay to zero. With ``time_budget_min`` the schedule
  runs on wall-clock progress instead of steps, so a run on a loaded machine
  still anneals fully before the budget ends; the manifest records the epochs
  it got, and ``epochs = N`` reproduces it on a step schedule.
- Selection on PublicTest (flip-averaged accuracy); PublicTest is never
  trained on. PrivateTest is not touched.

The exported graph takes grey faces (B, 1, 48, 48) float32 in 0..255 and does
the centre crop, the standardisation and (with ``flip = true``, shipped) the flip
averaging itself, so the runtime cannot normalise differently from training.
Flip averaging buys about 1.7 points of PublicTest accuracy for twice the
convolutions; with every convolution in INT8 (``fp32_convs = 0``) the pair
costs about 0.6 ms a face on this CPU (AVX2, no VNNI). Which convolutions pay
in INT8 depends on the net: measure before assuming.

Usage:
    nice -n 10 edge-msa train face --config configs/face.toml   # train, then export
    edge-msa train face --config configs/face.toml --export-only  # ONNX, INT8, manifest

config (TOML -> :class:`FaceConfig`), net (the CNN and the shipped graph),
data (FER2013 npz, augmentation), fit (the resumable training loop), export
(ONNX, INT8 QDQ, metrics, manifest), run.
"""
