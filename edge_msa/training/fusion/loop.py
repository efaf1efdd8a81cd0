"""``edge-msa train --config FILE``: train, select, export and describe the fusion model.

Double-flow self-distillation. Each batch goes through the model twice with
shared weights:

- flow 1 (teacher): the real transcript (sometimes with words dropped), the
  sentence's audio tokens and voice, and a face sequence;
- flow 2 (student): the same sentence as the runtime would hear it: the ASR
  transcript with its state, or no text at all (then the MIA imagines it),
  with the same audio and face.

Loss: L1 on every mean plus a Gaussian NLL on every log-variance (mean
detached, so the variance learns the error the mean makes); the same for the
per-modality heads that are present, and for the own heads (each modality
alone, before any cross-modal attention: ``loss.own``); the MIA reconstruction of the real-text
token (imagined and refined); distillation of the student's fused mean and
embedding towards the teacher's (detached); Rank-N-Contrast on the fused
embeddings. Modality dropout and LNLN-style random frame dropping throughout.
The checkpoint kept is the one with the lowest validation MAE averaged over
the three text states (present, ASR, absent), a set with class labels (MELD)
counting 1 - its weighted F1; test data is never read.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Collection
from pathlib import Path

import numpy as np

from edge_msa.training.fusion.config import TrainConfig
from edge_msa.training.fusion.data import training_data
from edge_msa.training.fusion.flows import predict, train_step

log = logging.getLogger(__name__)


def seed_all(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cosine_lr(opt, base: float, step: int, total: int, warmup: int) -> None:
    if step < warmup:
        lr = base * (step + 1) / warmup
    else:
        lr = 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))
    for g in opt.param_groups:
        g["lr"] = lr


def elapsed(start: float) -> float:
    return round(time.perf_counter() - start, 1)


def finished_run(cfg: TrainConfig) -> tuple[dict, dict]:
    """What :func:`train` returns, read back from a finished run's folder."""
    from edge_msa.config import ConfigError
    from edge_msa.training.fusion.export import load_checkpoint
    from edge_msa.training.fusion.net import parameter_count

    out = Path(cfg.out)
    if not (out / "best.pt").is_file() or not (out / "log.jsonl").is_file():
        raise ConfigError(f"out: {out} holds no finished run; train first (without --export-only)")
    history = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    report = {
        "history": history,
        "best_score": min(h["score"] for h in history),
        "params": parameter_count(load_checkpoint(out / "best.pt")),
        "train_seconds": history[-1]["elapsed_s"],
    }
    return report, training_data(cfg)[1]


def train(cfg: TrainConfig, progress: bool = True) -> tuple[dict, dict]:
    """Train; keep the best checkpoint (validation only); return the history
    and the validation feeds."""
    import torch
    from tqdm import tqdm

    from edge_msa.data.metrics import regression_metrics
    from edge_msa.training.fusion.net import build, parameter_count
    from edge_msa.training.fusion.voices import RAVDESS_FEED

    torch.set_num_threads(cfg.threads)
    seed_all(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "log.jsonl").unlink(missing_ok=True)  # a new run, a new log
    start = time.perf_counter()
    batcher, valid_feeds, dims = training_data(cfg)
    log.info("data ready in %.0f s", time.perf_counter() - start)
    model = build(dims, cfg.model.model_dump())
    kept = copy.deepcopy(model) if cfg.ema_decay else model  # what is validated and saved
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    steps = cfg.epochs * len(epoch_batches(batcher.speech, cfg.batch_size, rng))
    history, best, step = [], math.inf, 0
    class_sets = class_label_sets(cfg)
    for epoch in range(cfg.epochs):
        batches = epoch_batches(batcher.speech, cfg.batch_size, rng)
        losses = []
        bar = tqdm(
            batches,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress,
            leave=False,
        )
        for rows in bar:
            cosine_lr(opt, cfg.lr, step, steps, warmup=max(steps // 20, 1))
            losses.append(train_step(model, opt, batcher(rows, rng), cfg))
            if kept is not model:
                # The usual warm-up, so the random start fades within the first epoch.
                ema_update(kept, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
            step += 1
        metrics = {
            name: {
                mode: _val_metrics(
                    predict(kept, feed),
                    y,
                    regression_metrics,
                    feed["present"],
                    valence=name == RAVDESS_FEED,
                    classes=name in class_sets,
                )
                for mode, (feed, y) in feeds.items()
            }
            for name, feeds in valid_feeds.items()
        }
        score = combined_score(metrics, cfg, class_sets)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)),
                "score": score,
                "elapsed_s": elapsed(start),
                "valid": metrics,
            }
        )
        with (out / "log.jsonl").open("a") as f:
            f.write(json.dumps(history[-1]) + "\n")
        log.info(
            "epoch %d loss %.3f valid mean MAE %.4f%s%s",
            epoch + 1,
            history[-1]["loss"],
            score,
            _real_voice_line(metrics),
            " (best)" if score < best else "",
        )
        if score < best:
            best = score
            torch.save(
                {"state": kept.state_dict(), "dims": dims, "config": cfg.model_dump()},
                out / "best.pt",
            )
    report = {
        "history": history,
        "best_score": best,
        "params": parameter_count(model),
        "train_seconds": elapsed(start),
    }
    return report, valid_feeds


def run(
    cfg: TrainConfig,
    command: str = "edge-msa train fusion",
    progress: bool = True,
    export_only: bool = False,
) -> dict:
    """Train (or, with ``export_only``, take the finished run in ``cfg.out``),
    then export to ``cfg.export`` (when set); returns a short report. ``command``
    is what the manifest says reproduces the run."""
    from edge_msa.training.fusion.export import export

    report, valid_feeds = finished_run(cfg) if export_only else train(cfg, progress)
    summary = {
        "best_valid_mean_mae": round(report["best_score"], 4),
        "params": report["params"],
        "train_seconds": report["train_seconds"],
        "checkpoint": f"{cfg.out}/best.pt",
    }
    if cfg.export:
        info = {
            "data": cfg.data.model_dump(),
            "corpus": "joint corpus, see edge_msa/data/joint.py: an approximation of real "
            "multimodal data (text, audio, faces and voices from different sources)"
            + (
                "; real voices: RAVDESS clips on neutral words, valence from the acted "
                "emotion, see edge_msa/training/fusion/voices.py"
                if cfg.data.real_voices is not None
                else ""
            )
            if cfg.data.source == "corpus"
            else f"MMSA features {cfg.data.mmsa_file}",
            "command": command,
            "config": cfg.model_dump(),
            "text_folds": text_fold_info(cfg.data.text_folds),
            "params": report["params"],
            "train_seconds": report["train_seconds"],
            "history": [{k: h[k] for k in ("epoch", "loss", "score")} for h in report["history"]],
            "class_label_sets": class_label_sets(cfg),
            "nominal_sets": nominal_sets(cfg),
        }
        manifest = export(Path(cfg.out) / "best.pt", Path(cfg.export), valid_feeds, info)
        summary["export"] = cfg.export
        summary["variant"] = manifest["variant_choice"]
    return summary


def ema_update(average, model, decay: float) -> None:
    """average <- decay * average + (1 - decay) * model, weights and buffers."""
    import torch

    with torch.no_grad():
        for a, m in zip(average.state_dict().values(), model.state_dict().values(), strict=True):
            if a.dtype.is_floating_point:
                a.lerp_(m, 1.0 - decay)
            else:
                a.copy_(m)


def class_label_sets(cfg: TrainConfig) -> list[str]:
    """Validation sets with class labels (MELD), scored by F1 in the selection."""
    from edge_msa.data.labels import read_labels

    if cfg.data.source != "corpus":
        return []
    return [
        f"{Path(s.labels).parent.name}_{s.split}"
        for s in cfg.data.valid
        if read_labels(Path(cfg.data.root) / s.labels, s.split)[0].sentiment
    ]


def nominal_sets(cfg: TrainConfig) -> list[str]:
    """Validation sets whose scores stand for classes (MELD's sentiment, RAVDESS's
    acted emotion): a distance to them says nothing of the std, so the std
    temperature is fitted without them."""
    from edge_msa.training.fusion.voices import RAVDESS_FEED

    return class_label_sets(cfg) + ([RAVDESS_FEED] if cfg.data.real_voices else [])


def text_fold_info(dirs: list[str]) -> list[dict]:
    """What the manifest says of each cross-fitting text model."""
    from edge_msa.models import load_manifest
    from edge_msa.training.settings import expand

    out = []
    for d in dirs:
        m = load_manifest(expand(d), "scripts/train_text_fold.sh")
        out.append(
            {
                "fold": m["fold"],
                "command": f"scripts/train_text_fold.sh {m['fold']['index']} {m['fold']['count']}",
                "sha256": m["sha256"],
                "int8_mosi_dev_mae": m["metrics"]["int8_onnx"]["mosi_dev"]["mae"],
            }
        )
    return out


def epoch_batches(speech: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches that hold either only spoken rows or none: a batch
    without audio is trimmed to one audio token, so it costs a fraction."""
    out = []
    for rows in (np.flatnonzero(speech), np.flatnonzero(~speech)):
        rows = rng.permutation(rows)
        out += [rows[a : a + size] for a in range(0, len(rows) - size // 2, size)]
    return [out[i] for i in rng.permutation(len(out))]


def combined_score(metrics: dict, cfg: TrainConfig, class_sets: Collection[str] = ()) -> float:
    """The selection score: the validation MAE averaged over every (set, case),
    each case of the held-out RAVDESS actors weighted ``real_voices.valid_weight``;
    a set with class labels (MELD) counts 1 - its weighted F1 of the published
    polarity (as the text training selects), not an MAE to nominal scores."""
    from edge_msa.training.fusion.voices import RAVDESS_FEED

    rv = cfg.data.real_voices
    errors, weights = [], []
    for name, cases in metrics.items():
        w = rv.valid_weight if rv is not None and name == RAVDESS_FEED else 1.0
        for m in cases.values():
            errors.append(1.0 - m["f1_3class"] if name in class_sets else m["mae"])
            weights.append(w)
    return float(np.average(errors, weights=weights))


def _real_voice_line(metrics: dict) -> str:
    from edge_msa.training.fusion.voices import RAVDESS_FEED

    cases = metrics.get(RAVDESS_FEED, {})
    return "".join(
        f"; RAVDESS {mode} MAE {m['mae']:.3f} bacc3 {m['bacc_3class']:.3f}"
        f" pos/neg {m.get('bacc_pos_neg', float('nan')):.3f}"
        for mode, m in cases.items()
    )


def _val_metrics(
    pred: dict,
    y: np.ndarray,
    regression_metrics,
    present: np.ndarray,
    valence: bool = False,
    classes: bool = False,
) -> dict:
    from edge_msa.data.class_metrics import three_class
    from edge_msa.publishing.result import polarity
    from edge_msa.training.fusion.voices import valence_metrics

    m = regression_metrics(pred["mean"], y)
    if valence:  # acted emotions: the balanced accuracies the targets name
        m.update(valence_metrics(pred["mean"], y))
    if classes:  # nominal scores of 3 classes: the published polarity against them
        three = three_class([polarity(v) for v in y], [polarity(v) for v in pred["mean"]])
        m.update({k: v for k, v in three.items() if k != "confusion_3class"})
    std = np.exp(0.5 * pred["log_var"])
    err = np.abs(pred["mean"] - y)
    m["coverage_1sigma"] = float(np.mean(err <= std))
    m["coverage_2sigma"] = float(np.mean(err <= 2 * std))
    # Each own head's MAE on the rows where its modality is given (not imagined).
    own_err = np.abs(pred["own_mean"] - y[:, None])
    m["own_mae"] = {
        name: round(float(own_err[present[:, k] > 0, k].mean()), 4)
        for k, name in enumerate(("text", "audio", "vision"))
        if (present[:, k] > 0).any()
    }
    return m
