"""FER2013 faces for the expression CNN: loading, augmentation, class weights.

FER2013's images are already 48x48 face crops, so training uses them as they
are and crops nothing: the runtime's aligned crop
(:func:`edge_msa.vision.align.align_face`) is built to put the eyes where
FER2013's faces have them. A data set of whole images would be cut with
``align_face`` on the detector's faces, as ``edge-msa eval face --folder`` does.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edge_msa.config import ConfigError
from edge_msa.training.face.net import CROP, FULL, standardise
from edge_msa.types import FACE_EMOTIONS

MAX_SHIFT_PX = 4


def load_split(path: Path, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Faces (N, 1, 48, 48) in 0..1 and labels of a FER2013-style npz."""
    if not path.is_file():
        raise ConfigError(
            f"{key}: {path} not found; set `data` in the config (or EDGE_MSA_DATA) to the folder "
            "that holds fer2013/"
        )
    data = np.load(path)
    images = torch.from_numpy(data["images"].astype(np.float32) / 255.0).unsqueeze(1)
    return images, torch.from_numpy(data["labels"].astype(np.int64))


def augment(
    images: torch.Tensor,
    gen: torch.Generator,
    erase_p: float,
    camera: float = 0.0,
    zoom: tuple[float, float] = (0.9, 1.1),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crop + rotation + zoom + flip in one resample, another camera on a
    share ``camera`` of the faces (:func:`degrade`), then erasing. ``zoom`` bounds
    the size of the region sampled (above 1 the face looks smaller).

    Returns the student's view and the teachers': the same face and erased box
    without the camera, so that a teacher's soft labels come from the clean face.
    """
    n = images.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    angle = uniform(-10, 10) * math.pi / 180
    scale = uniform(*zoom) * (CROP / FULL)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    shift = MAX_SHIFT_PX / (FULL / 2)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, uniform(-shift, shift)], dim=1),
            torch.stack([sin * flip, cos, uniform(-shift, shift)], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [n, 1, CROP, CROP], align_corners=False)
    clean = F.grid_sample(images, grid, padding_mode="border", align_corners=False)
    if not camera:
        x = random_erase(standardise(clean), gen, erase_p)
        return x, x
    seen = standardise(degrade(clean, gen, camera))
    pair = random_erase(torch.cat([seen, standardise(clean)], dim=1), gen, erase_p)
    return pair[:, :1], pair[:, 1:]


# Sizes a 40x40 crop is brought down to and back up: a face further from the
# camera, or a lower resolution camera, than FER2013's (40: unchanged).
LOW_RES = (20, 26, 32, 40)


def degrade(x: torch.Tensor, gen: torch.Generator, share: float) -> torch.Tensor:
    """Faces (0..1) as another camera sees them, on a random share of the batch:
    lower resolution, blur or sharpening, a gamma curve and sensor noise.

    FER2013's faces are web photos of one look; the shipped CNN, trained on them
    alone, loses 10 points of accuracy to a Gaussian blur of 1 px and 14 to a
    face 24 px wide (scripts/face_camera_check.py).
    """
    n = x.shape[0]
    chosen = (torch.rand(n, generator=gen) < share).float()

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return (lo + (hi - lo) * torch.rand(n, generator=gen)) * chosen

    out = x.clone()
    full = x.shape[-2:]
    size = torch.randint(0, len(LOW_RES), (n,), generator=gen)
    for k, side in enumerate(LOW_RES[:-1]):
        pick = (size == k) & (chosen > 0)
        if pick.any():
            small = F.interpolate(out[pick], size=(side, side), mode="area")
            out[pick] = F.interpolate(small, size=full, mode="bilinear", align_corners=False)
    amount = uniform(-0.7, 1.0).view(-1, 1, 1, 1)  # -1: blurred, +1: sharpened
    out = out + amount * (out - gaussian_blur(out, sigma=1.2))
    gamma = torch.exp(uniform(-0.7, 0.7)).view(-1, 1, 1, 1)
    out = out.clamp(0, 1) ** gamma
    noise = uniform(0.0, 0.04).view(-1, 1, 1, 1)
    return (out + noise * torch.randn(out.shape, generator=gen)).clamp(0, 1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = math.ceil(2 * sigma)
    taps = torch.exp(-(torch.arange(-radius, radius + 1.0) ** 2) / (2 * sigma**2))
    taps = taps / taps.sum()
    kernel = (taps[:, None] * taps[None, :]).view(1, 1, 2 * radius + 1, 2 * radius + 1)
    return F.conv2d(F.pad(x, [radius] * 4, mode="replicate"), kernel)


def random_erase(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    n, _, h, w = x.shape
    area = (0.02 + 0.18 * torch.rand(n, generator=gen)) * h * w
    aspect = torch.exp(torch.empty(n).uniform_(math.log(0.3), math.log(3.3), generator=gen))
    eh = torch.sqrt(area * aspect).clamp(max=h)
    ew = torch.sqrt(area / aspect).clamp(max=w)
    y0 = torch.rand(n, generator=gen) * (h - eh)
    x0 = torch.rand(n, generator=gen) * (w - ew)
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    inside = (
        (ys >= y0.view(-1, 1, 1))
        & (ys < (y0 + eh).view(-1, 1, 1))
        & (xs >= x0.view(-1, 1, 1))
        & (xs < (x0 + ew).view(-1, 1, 1))
    )
    chosen = (torch.rand(n, generator=gen) < p).view(-1, 1, 1)
    return x.masked_fill((inside & chosen).unsqueeze(1), 0.0)


def cutmix(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Paste a box of another face of the batch into each face (CutMix, Yun et al.
    2019): the mixed batch, the other faces' order and the share of the own face."""
    n, _, h, w = x.shape
    lam = float(torch.rand(1, generator=gen))
    bh, bw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    y0 = int(torch.randint(0, h - bh + 1, (1,), generator=gen))
    x0 = int(torch.randint(0, w - bw + 1, (1,), generator=gen))
    perm = torch.randperm(n, generator=gen)
    out = x.clone()
    out[:, :, y0 : y0 + bh, x0 : x0 + bw] = x[perm, :, y0 : y0 + bh, x0 : x0 + bw]
    return out, perm, 1.0 - bh * bw / (h * w)


def centre(images: torch.Tensor) -> torch.Tensor:
    lo = (FULL - CROP) // 2
    return standardise(images[:, :, lo : lo + CROP, lo : lo + CROP])


def class_weights(labels: torch.Tensor, power: float) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=len(FACE_EMOTIONS)).float().clamp(min=1)
    w = counts.pow(-power)
    # Normalise so the average weight over training samples is 1 (lr unchanged).
    return w * counts.sum() / (w * counts).sum()
