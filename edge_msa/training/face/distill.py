"""Distillation (Hinton et al. 2015): finished runs teach the student through
their softened class probabilities on the student's own augmented batch."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional as F

from edge_msa.config import ConfigError
from edge_msa.training.face.net import finished_run, load_best


class Teachers:
    """The best checkpoints of finished runs; their mean softened probabilities."""

    def __init__(self, state_dirs: list[Path], temperature: float) -> None:
        for state in state_dirs:
            if not finished_run(state):
                raise ConfigError(
                    f"teachers: {state} holds no finished run (history.json and best.pt); "
                    "train the teacher first or remove it from `teachers`"
                )
        self.nets = [
            load_best(state)[0].to(memory_format=torch.channels_last) for state in state_dirs
        ]
        self.temperature = temperature

    @torch.no_grad()
    def probs(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [F.softmax(net(x)[0] / self.temperature, dim=1) for net in self.nets]
        ).mean(0)

    def loss(self, student_logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """KL(teachers || student) at the temperature, scaled by T^2 so its
        gradients keep their size as T changes."""
        t = self.temperature
        log_student = F.log_softmax(student_logits / t, dim=1)
        return F.kl_div(log_student, self.probs(x), reduction="batchmean") * t * t
