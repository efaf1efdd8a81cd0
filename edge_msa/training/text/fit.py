"""Fine-tuning the text model, and the frozen-encoder baseline beside it."""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from edge_msa.data.class_metrics import three_class
from edge_msa.data.labels import MELD_RANGES
from edge_msa.data.metrics import regression_metrics
from edge_msa.publishing.result import polarity
from edge_msa.training.text.data import (
    MELD_SENTIMENTS,
    Split,
    bucketed_batches,
    length_sorted_batches,
    pad_batch,
)
from edge_msa.training.text.model import TextSentimentModel, load_encoder


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def gaussian_nll(mean: torch.Tensor, log_var: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * (log_var + (y - mean.detach()) ** 2 * torch.exp(-log_var)).mean()


def lr_lambda(total: int, warmup: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


@torch.no_grad()
def predict_torch(
    model: TextSentimentModel, split: Split, batch: int = 64
) -> dict[str, np.ndarray]:
    model.eval()
    n = len(split.ids)
    mean, log_var = np.zeros(n, np.float32), np.zeros(n, np.float32)
    for idx in length_sorted_batches(split.ids, batch):
        ids, mask = pad_batch([split.ids[i] for i in idx])
        _, m, lv = model(ids, mask)
        mean[idx] = m.clamp(-3.0, 3.0).numpy()
        log_var[idx] = lv.numpy()
    return {"mean": mean, "log_var": log_var}


def split_metrics(mean: np.ndarray, split: Split) -> dict:
    """Regression metrics on a split with scores; on MELD's 3 classes, the
    published polarity against them (``acc_3class``, ``f1_3class``, ...)."""
    if split.is_3class:
        assert split.sentiment is not None
        truth = [MELD_SENTIMENTS[i] for i in split.sentiment]
        return three_class(truth, [polarity(float(m)) for m in mean])
    return regression_metrics(mean, split.labels)


def selection_error(metrics: dict[str, dict], devs: list[Split]) -> float:
    """What picks the checkpoint: the sum of MOSI dev MAE, MOSEI valid MAE and
    1 - MELD dev weighted F1 (those present; not the ASR transcripts)."""
    total = 0.0
    for d in devs:
        if d.name.endswith("_asr"):
            continue
        m = metrics[d.name]
        total += 1.0 - m["f1_3class"] if d.is_3class else m["mae"]
    return total


def evaluate_devs(model: TextSentimentModel, devs: list[Split]) -> dict[str, dict]:
    return {d.name: split_metrics(predict_torch(model, d)["mean"], d) for d in devs}


def fine_tune(
    args: SimpleNamespace, base: Path, train: Split, devs: list[Split]
) -> tuple[TextSentimentModel, list[dict]]:
    torch.manual_seed(args.seed)
    model = TextSentimentModel(load_encoder(base), class_heads=args.meld_heads > 0)
    if args.init:
        # Continue from an earlier run's checkpoint (a further epoch at a lower rate).
        model.load_state_dict(torch.load(args.init, weights_only=False)["state_dict"])
    else:
        with torch.no_grad():
            model.mean_head.bias.fill_(float(train.labels.mean()))
    model.freeze_bottom(args.freeze_layers)
    heads = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    trainable = [p for p in model.encoder.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [
            {"params": trainable, "lr": args.lr},
            {"params": heads, "lr": args.head_lr},
        ],
        weight_decay=0.01,
    )
    steps_per_epoch = math.ceil(len(train.ids) / args.batch_size)
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, int(0.06 * total)))
    eval_every = max(1, steps_per_epoch // args.evals_per_epoch)
    rng = np.random.default_rng(args.seed)
    history: list[dict] = []
    best: tuple[float, dict] | None = None
    step = 0
    t0 = time.time()
    for epoch in range(args.epochs):
        for idx in bucketed_batches(train.ids, args.batch_size, rng):
            model.train()
            ids, mask = pad_batch([train.ids[i] for i in idx])
            emb, raw_mean, log_var = model(ids, mask)
            y = targets(train, idx, raw_mean, args.meld_target)
            loss = (raw_mean - y).abs().mean() + gaussian_nll(raw_mean, log_var, y)
            loss = loss + args.meld_heads * class_loss(model, emb, train, idx)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0:
                elapsed = time.time() - t0
                log(f"epoch {epoch} step {step}/{total} loss {loss.item():.4f} {elapsed:.0f}s")
            # Skip a periodic eval that lands just before the final one.
            periodic = step % eval_every == 0 and total - step >= eval_every // 2
            if periodic or step == total:
                best = checkpoint(model, devs, epoch, step, t0, history, best)
    assert best is not None
    model.load_state_dict(best[1])
    return model, history


CLASS_RANGES = torch.tensor([MELD_RANGES[s] for s in MELD_SENTIMENTS])


def targets(train: Split, idx: np.ndarray, mean: torch.Tensor, kind: str) -> torch.Tensor:
    """The batch's L1 targets: the labels, or for MELD rows with ``interval``
    targets the nearest point of the class's range (so a prediction inside it
    costs nothing)."""
    y = torch.from_numpy(train.labels[idx])
    if kind != "interval" or train.sentiment is None:
        return y
    cls = torch.from_numpy(train.sentiment[idx])
    rows = cls >= 0
    ranges = CLASS_RANGES[cls.clamp(min=0)]
    nearest = torch.minimum(torch.maximum(mean.detach(), ranges[:, 0]), ranges[:, 1])
    return torch.where(rows, nearest, y)


def class_loss(
    model: TextSentimentModel, emb: torch.Tensor, train: Split, idx: np.ndarray
) -> torch.Tensor:
    """Cross-entropy of the auxiliary heads on the batch's MELD rows (0 without)."""
    if model.class_heads is None or train.sentiment is None:
        return emb.new_zeros(())
    total = emb.new_zeros(())
    for name, classes in (("sentiment", train.sentiment), ("emotion", train.emotion)):
        assert classes is not None
        y = torch.from_numpy(classes[idx])
        rows = y >= 0
        if rows.any():
            logits = model.class_heads[name](model.dropout(emb[rows]))
            total = total + nn.functional.cross_entropy(logits, y[rows])
    return total


def checkpoint(
    model: TextSentimentModel,
    devs: list[Split],
    epoch: int,
    step: int,
    t0: float,
    history: list[dict],
    best: tuple[float, dict] | None,
) -> tuple[float, dict]:
    metrics = evaluate_devs(model, devs)
    score = selection_error(metrics, devs)
    entry = {"epoch": epoch, "step": step, "elapsed_s": round(time.time() - t0, 1),
             "selection_error": round(score, 4), **metrics}
    history.append(entry)
    log("eval " + json.dumps(entry))
    if best is None or score < best[0]:
        return score, copy.deepcopy(model.state_dict())
    return best


@torch.no_grad()
def embed_all(encoder: TextSentimentModel, split: Split, batch: int = 64) -> torch.Tensor:
    encoder.eval()
    out = torch.zeros((len(split.ids), 384))
    for idx in length_sorted_batches(split.ids, batch):
        ids, mask = pad_batch([split.ids[i] for i in idx])
        out[idx] = encoder.embed(ids, mask)
    return out


def frozen_baseline(args: SimpleNamespace, base: Path, train: Split, devs: list[Split]) -> dict:
    """Frozen MiniLM embeddings + a small MLP trained with L1."""
    t0 = time.time()
    torch.manual_seed(args.seed)
    enc = TextSentimentModel(load_encoder(base))
    x_train = embed_all(enc, train)
    x_devs = [embed_all(enc, d) for d in devs]
    log(f"frozen: embedded {len(train.ids)} + dev rows in {time.time() - t0:.0f}s")
    head = nn.Sequential(
        nn.Dropout(0.1), nn.Linear(384, 256), nn.GELU(), nn.Dropout(0.1), nn.Linear(256, 1)
    )
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.01)
    y = torch.from_numpy(train.labels)
    g = torch.Generator().manual_seed(args.seed)
    best: dict | None = None
    for epoch in range(args.frozen_epochs):
        head.train()
        for idx in torch.randperm(len(y), generator=g).split(64):
            loss = (head(x_train[idx]).squeeze(-1) - y[idx]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            metrics = {
                d.name: split_metrics(head(x).squeeze(-1).clamp(-3, 3).numpy(), d)
                for d, x in zip(devs, x_devs, strict=True)
            }
        if best is None or selection_error(metrics, devs) < selection_error(best["metrics"], devs):
            best = {"epoch": epoch, "metrics": metrics}
    assert best is not None
    best["head"] = "Dropout-Linear(384,256)-GELU-Dropout-Linear(256,1), L1, AdamW lr 1e-3, batch 64"
    best["epochs_tried"] = args.frozen_epochs
    best["selected_on"] = selection_error.__doc__
    best["elapsed_s"] = round(time.time() - t0, 1)
    log("frozen baseline " + json.dumps(best))
    return best


def frozen_or_cached(
    args: SimpleNamespace, base: Path, train: Split, devs: list[Split]
) -> dict | None:
    """The frozen baseline, reusing WORK/frozen.json with --reuse-frozen.

    The baseline does not depend on any fine-tuning option, and embedding the
    training set costs minutes on a shared CPU.
    """
    if args.skip_frozen:
        return None
    cache = args.frozen_cache
    if args.reuse_frozen and cache.is_file():
        log(f"frozen baseline reused from {cache}")
        return {**json.loads(cache.read_text()), "reused_from": str(cache)}
    result = frozen_baseline(args, base, train, devs)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result))
    return result
