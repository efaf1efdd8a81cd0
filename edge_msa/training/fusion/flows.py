"""The fusion training's two flows per batch, its losses and one optimiser step.

Flow 1 (teacher) sees the real transcript, flow 2 (student) the sentence as
the runtime would hear it: the ASR transcript with its state, or no text.
"""

from __future__ import annotations

import numpy as np

from edge_msa.fusion.features import FusionInputs, batch
from edge_msa.training.fusion.config import TrainConfig


def _drop_frames(x: np.ndarray | None, rate: float, rng: np.random.Generator):
    if x is None or rate <= 0:
        return x
    keep = rng.random(len(x)) >= rate
    return x[keep] if keep.any() else None


def corpus_flows(S, W, rows: np.ndarray, rng: np.random.Generator, cfg: TrainConfig, train: bool):
    """Feeds for flow 1 and flow 2, labels and which rows have speech. In
    training with interval targets the labels are (N, 2) ranges."""
    teacher, student = corpus_inputs(S, W, rows, rng, cfg, train)
    y = S.label_ranges()[rows] if train and interval_targets(cfg) else S.labels[rows]
    return batch(teacher), batch(student), y, S.speech[rows] >= 0


def interval_targets(cfg: TrainConfig) -> bool:
    return cfg.data.meld_target == "interval"


def corpus_inputs(S, W, rows: np.ndarray, rng: np.random.Generator, cfg: TrainConfig, train: bool):
    """Flow 1 and flow 2 inputs (unbatched) of the sentences ``rows``."""
    teacher, student = [], []
    for i in rows:
        y, k = float(S.labels[i]), int(S.speech[i])
        audio = S.audio[k].astype(np.float32) if k >= 0 else None
        voice = None
        if k >= 0:
            # Sometimes the rendering's own (flat, uninformative) voice, so the
            # model does not learn that the voice always tracks the label.
            own = train and rng.random() < cfg.p_own_voice
            voice = S.voice_probs[k] if own else W.voice(y, rng)
        vision = W.face(y, rng)
        text = S.text[i]
        if train:
            if rng.random() < cfg.p_words_dropped:
                text = S.text_dropped[i]
            if rng.random() < cfg.p_drop_modality:
                audio = None
            if rng.random() < cfg.p_drop_modality:
                vision = None
            audio = _drop_frames(audio, rng.uniform(0, cfg.max_frame_drop), rng)
            vision = _drop_frames(vision, rng.uniform(0, cfg.max_frame_drop), rng)
        teacher.append(FusionInputs(text=text, audio=audio, voice=voice, vision=vision))
        state = str(S.asr_state[k]) if k >= 0 else "absent"
        if train and rng.random() < cfg.p_text_absent:
            state = "absent"
        asr = S.asr_text[k] if state != "absent" else None
        # The recogniser's text is always flagged: the model refines it (MIA),
        # confident or not, as it will at run time.
        student.append(
            FusionInputs(
                text=asr, simulated=asr is not None, audio=audio, voice=voice, vision=vision
            )
        )
    return teacher, student


def _trim(feed: dict) -> dict:
    """Cut the audio padding to the longest row: most rows of a batch are short."""
    t = max(int(feed["audio_mask"].sum(1).max()), 1)
    return {**feed, "audio": feed["audio"][:, :t], "audio_mask": feed["audio_mask"][:, :t]}


# ---------------------------------------------------------------- losses


def _target(mean, y):
    """The labels, or for (N, 2) ranges the nearest allowed score: a mean inside
    its row's range costs nothing."""
    import torch

    if y.ndim == 1:
        return y
    return torch.minimum(torch.maximum(mean.detach(), y[:, 0]), y[:, 1])


def _gauss(mean, log_var, y, weight):
    """L1 on the mean + Gaussian NLL on the log-variance (mean detached), masked;
    ``y`` labels (N,) or ranges (N, 2)."""
    y = _target(mean, y)
    nll = 0.5 * (log_var + (y - mean.detach()) ** 2 / log_var.exp())
    per = (mean - y).abs() + nll
    return (per * weight).sum() / weight.sum().clamp_min(1.0)


def rnc_loss(z, y, temperature: float):
    """Rank-N-Contrast (Zha et al., NeurIPS 2023) over a batch of embeddings."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(z, dim=-1)
    n = z.shape[0]
    sim = -torch.cdist(z, z) / temperature
    d = (y[:, None] - y[None, :]).abs()
    eye = torch.eye(n, dtype=torch.bool)
    # for anchor i and positive j, the negatives are k != i no closer in label than j
    allowed = (d[:, None, :] >= d[:, :, None]) & ~eye[:, None, :]
    logits = sim[:, None, :].expand(n, n, n).masked_fill(~allowed, float("-inf"))
    log_den = torch.logsumexp(logits, dim=-1)
    return -(sim - log_den)[~eye].mean()


def flow_loss(model, feed, y, cfg: TrainConfig):
    """Fused + per-modality + own-head loss of one flow; also returns what
    distillation needs. The own heads learn the sentence's label from each
    present modality alone (text: also when imagined, as it is published)."""
    import torch

    h, mask, own, imagined, refined = model.encode(**feed)
    prior = model.text_prior(feed["text"], feed["present"])
    mean, log_var, means, log_vars, _ = model.heads_out(h, mask, prior)
    own_means, own_log_vars = model.own_out(own, prior)
    ones = torch.ones_like(mean)
    loss = _gauss(mean, log_var, y, ones)
    w_own = cfg.loss.modality if cfg.loss.own is None else cfg.loss.own
    for m in range(3):
        loss = loss + cfg.loss.modality * _gauss(means[:, m], log_vars[:, m], y, mask[:, m])
        loss = loss + w_own * _gauss(own_means[:, m], own_log_vars[:, m], y, mask[:, m])
    return loss, mean, h[:, 3], imagined, refined


def train_step(model, opt, flows, cfg: TrainConfig):
    import torch

    feed1, feed2, y, speech = flows
    t1 = {k: torch.from_numpy(v) for k, v in _trim(feed1).items()}
    t2 = {k: torch.from_numpy(v) for k, v in _trim(feed2).items()}
    y = torch.from_numpy(y)
    s = torch.from_numpy(speech.astype(np.float32))
    loss1, mean1, z1, _, _ = flow_loss(model, t1, y, cfg)
    loss2, mean2, z2, imagined, refined = flow_loss(model, t2, y, cfg)
    loss = loss1 + loss2
    if cfg.model.mia:
        target = model.text_in(t1["text"]).detach()
        absent = s * (1 - t2["present"][:, 0]) * t2["present"][:, 1]
        simulated = s * t2["simulated"][:, 0]
        rec = ((imagined - target) ** 2).mean(-1) * absent + ((refined - target) ** 2).mean(
            -1
        ) * simulated
        loss = loss + cfg.loss.mia * rec.sum() / (absent + simulated).sum().clamp_min(1.0)
    if cfg.loss.distill > 0:
        kd = (mean2 - mean1.detach()) ** 2 + ((z2 - z1.detach()) ** 2).mean(-1)
        loss = loss + cfg.loss.distill * (kd * s).sum() / s.sum().clamp_min(1.0)
    if cfg.loss.rnc > 0:
        ranked = y if y.ndim == 1 else y.mean(-1)
        loss = loss + cfg.loss.rnc * rnc_loss(
            torch.cat([z1, z2]), torch.cat([ranked, ranked]), cfg.loss.rnc_temperature
        )
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


def predict(model, feed: dict[str, np.ndarray], batch_size: int = 512) -> dict[str, np.ndarray]:
    """Eval-mode outputs for a feed, in chunks."""
    import torch

    model.eval()
    outs = []
    n = len(feed["text"])
    with torch.no_grad():
        for a in range(0, n, batch_size):
            part = {k: torch.from_numpy(v[a : a + batch_size]) for k, v in feed.items()}
            mean, log_var, means, log_vars, w, _, own_mean, own_log_var = model(**_trim(part))
            outs.append((mean, log_var, means, log_vars, w, own_mean, own_log_var))
    model.train()
    names = ("mean", "log_var", "modality_mean", "modality_log_var", "weights")
    names += ("own_mean", "own_log_var")
    cat = [torch.cat([o[i] for o in outs]).numpy() for i in range(len(names))]
    return dict(zip(names, cat, strict=True))
