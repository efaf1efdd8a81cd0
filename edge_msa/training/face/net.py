"""The expression CNN and the graph that ships (crop, standardisation, flip inside)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from edge_msa.types import FACE_EMOTIONS

FULL = 48
CROP = 40


def conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class FaceNet(nn.Module):
    """VGG-style CNN on standardised 40x40 grey faces -> (logits, embedding)."""

    def __init__(
        self,
        widths: tuple[int, ...] = (16, 32, 64, 128),
        reps: tuple[int, ...] = (1, 2, 2, 2),
        dropout: float = 0.3,
        embed: int | None = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for width, rep in zip(widths, reps, strict=True):
            for _ in range(rep):
                layers += conv_bn_relu(cin, width)
                cin = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        # A wide last stage still hands the fusion an embedding of ``embed`` values.
        self.project = (
            nn.Sequential(nn.Linear(cin, embed), nn.BatchNorm1d(embed), nn.ReLU(inplace=True))
            if embed
            else nn.Identity()
        )
        self.embedding_dim = embed or cin
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.embedding_dim, len(FACE_EMOTIONS))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.project(self.features(x).mean(dim=(2, 3)))
        return self.head(self.dropout(embedding)), embedding


def build_net(settings) -> FaceNet:
    """From a config's settings (an object or a checkpoint's dict)."""
    get = settings.get if isinstance(settings, dict) else lambda k: getattr(settings, k, None)
    return FaceNet(tuple(get("widths")), tuple(get("reps")), get("dropout"), get("embed"))


def load_best(state: Path) -> tuple[FaceNet, dict]:
    """A finished run's best checkpoint (eval mode) and its history.json record."""
    record = json.loads((state / "history.json").read_text())
    net = build_net(record["args"])
    net.load_state_dict(torch.load(state / "best.pt", weights_only=True))
    return net.eval(), record


def finished_run(state: Path) -> bool:
    return (state / "history.json").is_file() and (state / "best.pt").is_file()


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Per-image zero mean, unit variance; the floor keeps flat images finite."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-4)


class Deployed(nn.Module):
    """What ships: raw 48x48 grey 0..255 in, (logits, embedding) out."""

    def __init__(self, net: FaceNet, flip_average: bool) -> None:
        super().__init__()
        self.net = net
        self.flip_average = flip_average

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo = (FULL - CROP) // 2
        x = standardise(image[:, :, lo : lo + CROP, lo : lo + CROP] / 255.0)
        if not self.flip_average:
            return self.net(x)
        n = x.shape[0]
        logits, embedding = self.net(torch.cat([x, torch.flip(x, dims=[3])], dim=0))
        return (logits[:n] + logits[n:]) / 2, (embedding[:n] + embedding[n:]) / 2
