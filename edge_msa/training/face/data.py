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


def augment(images: torch.Tensor, gen: torch.Generator, erase_p: float) -> torch.Tensor:
    """Random crop + rotation + zoom + flip in one resample, then erasing."""
    n = images.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    angle = uniform(-10, 10) * math.pi / 180
    zoom = uniform(0.9, 1.1) * (CROP / FULL)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    shift = MAX_SHIFT_PX / (FULL / 2)
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, uniform(-shift, shift)], dim=1),
            torch.stack([sin * flip, cos, uniform(-shift, shift)], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, [n, 1, CROP, CROP], align_corners=False)
    out = standardise(F.grid_sample(images, grid, padding_mode="border", align_corners=False))
    return random_erase(out, gen, erase_p)


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
