"""The fusion model in PyTorch (training and export only; serving runs the ONNX graph).

Small and edge-sized, after the seed paper's recipe:

1. Project each modality to ``width``; attention-pool the audio tokens and
   the vision frames (masked: padding and dropped frames weigh nothing); the
   voice-emotion probabilities join the pooled audio.
2. Modality imagination autoencoder (MIA): an encoder maps the pooled audio
   and vision to a latent and a decoder maps it to a text token. When the text
   is ``absent`` the imagined token stands in for it (only when audio is
   there: vision alone says little about words); when it is ``simulated``
   (an ASR transcript) a residual network refines it towards the real-text
   token. Training pulls both towards the real-text token of the same
   sentence (reconstruction loss).
3. Unified cross-attention: the text, audio and vision tokens and a learned
   fused query attend to each other in ``layers`` transformer blocks; a key
   mask removes absent modalities, so they contribute nothing.
4. Heteroscedastic heads: each modality's token and the fused query give a
   mean and a log-variance. The text head starts from the text model's own
   score (the last text feature, :func:`edge_msa.fusion.features.text_feature`)
   and learns a correction. Embeddings of sentences the text model was
   fine-tuned on fit the labels better than new ones do (the text model's MAE:
   0.59 on MOSI train, 0.81 on MOSI dev); learning the whole mapping from them
   made text alone worse than the text model (MOSI dev 0.85-0.86), and so did
   the score as one more input (0.857). With ``data.text_folds`` the training
   sentences are scored out of sample instead (:mod:`edge_msa.data.folds`);
   the head still starts from the score. The output is a
   mixture of the present heads, weighted by softmax(gate - log_var): the
   predicted precision and a learned gate that the fused query sets. Its
   variance is the mixture variance. Given the text alone, the score is the
   text model's plus ``text_alone`` times the fusion's correction of it
   (chosen on validation at export: the correction was learned on the fold
   models' scores, which are worse than the shipped text model's).
5. Own heads (what a result's ``outputs.<modality>`` publishes): each
   modality's estimate from its own token before any cross-modal attention:
   the text token fed to attention (real, ASR-refined or imagined; it starts
   from the text model's score as above), the pooled audio + voice token and
   the pooled vision token. Side heads: the fused output never reads them.

Inputs and outputs are those of :mod:`edge_msa.fusion.features` and
``OUTPUT_NAMES``; sizes are constructor arguments so that MMSA feature
pickles (other widths) train the same architecture.
"""

from __future__ import annotations

import torch
from torch import nn

from edge_msa.fusion.features import AUDIO_DIM, TEXT_DIM, VISION_DIM, VOICE_DIM

INPUT_NAMES = (
    "text",
    "audio",
    "audio_mask",
    "voice",
    "vision",
    "vision_mask",
    "present",
    "simulated",
)
OUTPUT_NAMES = (
    "mean",
    "log_var",
    "modality_mean",
    "modality_log_var",
    "weights",
    "text_imagined",
    "own_mean",
    "own_log_var",
)
NEG = -1e4  # additive mask; finite so that INT8/FP16 graphs stay NaN-free
LOG_VAR_RANGE = (-6.0, 4.0)


def _mlp(i: int, h: int, o: int, p: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.GELU(), nn.Dropout(p), nn.Linear(h, o))


class AttentionPool(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.score = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = self.score(x).squeeze(-1) + (1.0 - mask) * NEG
        w = torch.softmax(s, dim=-1) * mask  # an all-masked row pools to zeros
        return (w.unsqueeze(-1) * x).sum(1) / w.sum(1, keepdim=True).clamp_min(1e-6)


class Block(nn.Module):
    def __init__(self, width: int, heads: int, p: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, dropout=p, batch_first=True)
        self.ff = _mlp(width, 2 * width, width, p)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        heads = self.attn.num_heads
        # (B, 4) additive key bias -> (B * heads, 4, 4) float mask
        bias = key_bias[:, None, None, :].expand(-1, heads, x.shape[1], -1)
        mask = bias.reshape(-1, x.shape[1], x.shape[1])
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.ff(self.norm2(x))


class FusionNet(nn.Module):
    def __init__(
        self,
        text_dim: int = TEXT_DIM,
        audio_dim: int = AUDIO_DIM,
        vision_dim: int = VISION_DIM,
        voice_dim: int = VOICE_DIM,
        width: int = 128,
        heads: int = 4,
        layers: int = 2,
        dropout: float = 0.1,
        use_mia: bool = True,
        use_gate: bool = True,
        audio_layers: int = 1,
        text_score: bool = True,
    ) -> None:
        super().__init__()
        self.use_mia, self.use_gate, self.text_score = use_mia, use_gate, text_score
        # With the text alone: the text model's score plus this share of the fusion's
        # move away from it (1: the fusion's own; chosen at export, see export.py).
        self.text_alone = 1.0
        self.text_in = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, width))
        self.audio_in = nn.Sequential(nn.LayerNorm(audio_dim), nn.Linear(audio_dim, width))
        self.voice_in = nn.Linear(voice_dim, width)
        self.vision_in = nn.Sequential(nn.LayerNorm(vision_dim), nn.Linear(vision_dim, width))
        # Self-attention over the audio tokens before pooling, so that the pooled
        # audio (what the MIA imagines the words from) keeps some word order.
        self.audio_blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(audio_layers))
        self.audio_pool, self.vision_pool = AttentionPool(width), AttentionPool(width)
        self.mia_encoder = _mlp(2 * width + 2, 2 * width, width, dropout)
        self.mia_decoder = _mlp(width, 2 * width, width, dropout)
        self.refine = _mlp(2 * width, 2 * width, width, dropout)
        self.query = nn.Parameter(torch.zeros(1, 1, width))
        self.kind = nn.Parameter(torch.randn(1, 4, width) * 0.02)  # text, audio, vision, query
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        # One (mean, log_var) head per token: text, audio, vision, fused.
        self.head_w = nn.Parameter(torch.randn(4, width, 2) * 0.02)
        self.head_b = nn.Parameter(torch.zeros(4, 2))
        self.gate = nn.Linear(width, 4)
        # Own heads (text, audio, vision) on the tokens before the blocks. The last
        # layer starts at zero: text at the text model's score, the others at 0.
        self.own = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), _mlp(width, width, 2, dropout)) for _ in range(3)
        )
        for head in self.own:
            nn.init.zeros_(head[1][-1].weight)
            nn.init.zeros_(head[1][-1].bias)

    def encode(self, text, audio, audio_mask, voice, vision, vision_mask, present, simulated):
        """Tokens after cross-attention (B, 4, W), their mask (B, 4), the text,
        audio and vision tokens fed to attention (B, 3, W: what the own heads
        read), the imagined and the refined text token (for the MIA loss)."""
        pt, pa, pv = present[:, 0:1], present[:, 1:2], present[:, 2:3]
        tokens = self.audio_in(audio)
        for block in self.audio_blocks:
            tokens = block(tokens, (1.0 - audio_mask) * NEG)
        a = self.audio_pool(tokens, audio_mask) + self.voice_in(voice)
        a = a * pa
        v = self.vision_pool(self.vision_in(vision), vision_mask) * pv
        t_real = self.text_in(text)
        if self.use_mia:
            imagined = self.mia_decoder(self.mia_encoder(torch.cat([a, v, pa, pv], dim=-1)))
            refined = t_real + self.refine(torch.cat([t_real, a], dim=-1))
            t_absent = imagined
            text_mask = torch.maximum(pt, pa)
        else:
            imagined, refined = t_real, t_real
            t_absent = torch.zeros_like(t_real)
            text_mask = pt
        t = pt * (simulated * refined + (1 - simulated) * t_real) + (1 - pt) * t_absent
        mask = torch.cat([text_mask, pa, pv, torch.ones_like(pa)], dim=-1)
        own = torch.stack([t, a, v], dim=1)
        x = torch.cat([own, self.query.expand(t.shape[0], -1, -1)], dim=1)
        x = x + self.kind
        bias = (1.0 - mask) * NEG
        for block in self.blocks:
            x = block(x, bias)
        return self.norm(x), mask, own, imagined, refined

    def forward(self, text, audio, audio_mask, voice, vision, vision_mask, present, simulated):
        h, mask, own, imagined, _ = self.encode(
            text, audio, audio_mask, voice, vision, vision_mask, present, simulated
        )
        prior = self.text_prior(text, present)
        mean, *out = self.heads_out(h, mask, prior)
        if self.text_alone != 1.0:
            alone = present[:, 0] * (1.0 - present[:, 1]) * (1.0 - present[:, 2])
            score = 3.0 * torch.tanh(prior / 3.0)
            mean = mean + alone * (1.0 - self.text_alone) * (score - mean)
        imagined_flag = (1 - present[:, 0:1]) * mask[:, 0:1]
        return (mean, *out, imagined_flag.squeeze(-1), *self.own_out(own, prior))

    def own_out(self, own: torch.Tensor, text_prior: torch.Tensor):
        """Each modality's own mean and log-var (B, 3) from its token before fusion."""
        o = torch.stack([head(own[:, i]) for i, head in enumerate(self.own)], dim=1)
        mv = torch.cat([o[:, :1, 0] + text_prior[:, None], o[:, 1:, 0]], dim=1)
        return 3.0 * torch.tanh(mv / 3.0), o[..., 1].clamp(*LOG_VAR_RANGE)

    def text_prior(self, text: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """(B,) the text model's score before the heads' 3·tanh(x / 3); 0 without text."""
        if not self.text_score:
            return torch.zeros_like(present[:, 0])
        score = text[:, -1].clamp(-0.995, 0.995)  # score / 3
        atanh = 0.5 * torch.log((1.0 + score) / (1.0 - score))  # no aten::atanh in ONNX export
        return 3.0 * atanh * present[:, 0]

    def heads_out(self, h: torch.Tensor, mask: torch.Tensor, text_prior: torch.Tensor):
        """mean (B,), log_var (B,), per-modality means and log-vars (B, 3), weights (B, 4)."""
        o = torch.einsum("biw,iwk->bik", h, self.head_w) + self.head_b
        mv, lv = o[..., 0], o[..., 1]
        mv = torch.cat([mv[:, :1] + text_prior[:, None], mv[:, 1:]], dim=1)
        means = 3.0 * torch.tanh(mv / 3.0)
        log_vars = lv.clamp(*LOG_VAR_RANGE)
        gate = self.gate(h[:, 3]) if self.use_gate else torch.zeros_like(log_vars)
        logits = gate - log_vars + (1.0 - mask) * NEG
        w = torch.softmax(logits, dim=-1)
        mean = (w * means).sum(-1)
        var = (w * (log_vars.exp() + (means - mean.unsqueeze(-1)) ** 2)).sum(-1)
        return mean, var.log(), means[:, :3], log_vars[:, :3], w


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(dims: dict, model: dict) -> FusionNet:
    """The network from input sizes and a ``[model]`` config section (as a dict)."""
    return FusionNet(
        **dims,
        width=model["width"],
        heads=model["heads"],
        layers=model["layers"],
        dropout=model["dropout"],
        use_mia=model["mia"],
        use_gate=model["gate"],
        audio_layers=model["audio_layers"],
    )
