"""The text model in PyTorch: MiniLM, masked mean pooling, a mean head and a
log-variance head; and the graph that ships."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


class TextSentimentModel(nn.Module):
    """Encoder + mean pooling + mean head + log-variance head."""

    def __init__(
        self, encoder: nn.Module, dim: int = 384, var_hidden: int = 64, class_heads: bool = False
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(0.1)
        self.mean_head = nn.Linear(dim, 1)
        self.var_head = nn.Sequential(
            nn.Linear(dim, var_hidden), nn.GELU(), nn.Linear(var_hidden, 1)
        )
        # Training-only auxiliary heads on MELD's 3 sentiments and 7 emotions;
        # the exported graph does not read them.
        self.class_heads = (
            nn.ModuleDict({"sentiment": nn.Linear(dim, 3), "emotion": nn.Linear(dim, 7)})
            if class_heads
            else None
        )

    def freeze_bottom(self, n_layers: int) -> None:
        """Freeze the embeddings and the first ``n_layers`` transformer layers.

        On a shared 2-core CPU the backward pass through all six layers made
        an epoch take far too long; the top layers carry most of the gain.
        """
        if n_layers <= 0:
            return
        frozen = [self.encoder.embeddings, *self.encoder.encoder.layer[:n_layers]]
        for module in frozen:
            for param in module.parameters():
                param.requires_grad_(False)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        token_type_ids = torch.zeros_like(input_ids)
        out = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        return mean_pool(out.last_hidden_state, attention_mask)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        emb = self.embed(input_ids, attention_mask)
        raw_mean = self.mean_head(self.dropout(emb)).squeeze(-1)
        # The variance head sees detached features so its loss cannot pull
        # the encoder away from what is best for the mean.
        log_var = self.var_head(emb.detach()).squeeze(-1)
        return emb, raw_mean, log_var


class ExportWrapper(nn.Module):
    """The graph that ships: embedding, clipped mean, raw log-variance."""

    def __init__(self, model: TextSentimentModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        emb, raw_mean, log_var = self.model(input_ids, attention_mask)
        return emb, raw_mean.clamp(-3.0, 3.0), log_var


def load_encoder(base: Path) -> nn.Module:
    from transformers import AutoModel

    # Eager attention exports cleanly with the TorchScript-based exporter.
    return AutoModel.from_pretrained(str(base), attn_implementation="eager")
