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
per-modality heads that are present; the MIA reconstruction of the real-text
token (imagined and refined); distillation of the student's fused mean and
embedding towards the teacher's (detached); Rank-N-Contrast on the fused
embeddings. Modality dropout and LNLN-style random frame dropping throughout.
The checkpoint kept is the one with the lowest validation MAE averaged over
the three text states (present, ASR, absent); test data is never read.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge_msa.fusion.features import FusionInputs, batch

log = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SplitSpec(_Strict):
    labels: str  # relative to data.root
    split: str
    limit: int | None = None


class DataConfig(_Strict):
    source: Literal["corpus", "mmsa"] = "corpus"
    root: str = Field(default_factory=lambda: os.environ.get("EDGE_MSA_DATA", "../shared/datasets"))
    train: list[SplitSpec] = [
        SplitSpec(labels="mosei/label.csv", split="train"),
        SplitSpec(labels="mosi/label.csv", split="train"),
    ]
    valid: list[SplitSpec] = [
        SplitSpec(labels="mosi/label.csv", split="dev"),
        SplitSpec(labels="mosei/label.csv", split="valid"),
    ]
    faces_train: str = "fer2013/fer2013_Training.npz"
    faces_valid: str = "fer2013/fer2013_PublicTest.npz"
    spoken_cache: str | None = None
    # Cross-fitting text models (scripts/train_text_fold.sh K N): the training
    # sentences' text features come from the fold model that never saw their
    # video, so the fusion learns how far to trust the text score out of sample.
    # Empty: the shipped text model scores everything.
    text_folds: list[str] = []
    disagree: float = Field(0.2, ge=0.0, le=1.0)
    mmsa_file: str | None = None  # source = "mmsa": an MMSA feature pickle


class ModelConfig(_Strict):
    width: int = 128
    heads: int = 4
    layers: int = 2
    dropout: float = 0.1
    mia: bool = True
    gate: bool = True
    audio_layers: int = 1


class LossConfig(_Strict):
    modality: float = 0.5
    mia: float = 1.0
    distill: float = 1.0
    rnc: float = 0.1
    rnc_temperature: float = 0.5


class TrainConfig(_Strict):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 2
    p_text_absent: float = 0.3
    p_drop_modality: float = 0.3
    p_words_dropped: float = 0.2
    # Half of the spoken rows keep the rendering's own voice: with a voice that
    # always matches the label the model learns to trust it, and espeak-ng's flat
    # voice (what `eval speech` hears) then pulls scores down.
    p_own_voice: float = 0.5
    max_frame_drop: float = 0.5
    out: str = "runs/fusion"
    export: str | None = "models/fusion"


def load_train_config(path: str | Path) -> TrainConfig:
    import tomllib

    from edge_msa.config import ConfigError

    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from None
    try:
        return TrainConfig.model_validate(raw)
    except Exception as e:  # pydantic.ValidationError: name the first bad field
        errors = getattr(e, "errors", lambda: [])()
        if errors:
            err = errors[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"{path}: {where}: {err['msg']}") from None
        raise ConfigError(f"{path}: {e}") from None


# ---------------------------------------------------------------- flows


def _drop_frames(x: np.ndarray | None, rate: float, rng: np.random.Generator):
    if x is None or rate <= 0:
        return x
    keep = rng.random(len(x)) >= rate
    return x[keep] if keep.any() else None


def corpus_flows(S, W, rows: np.ndarray, rng: np.random.Generator, cfg: TrainConfig, train: bool):
    """Feeds for flow 1 and flow 2, labels and which rows have speech."""
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
            FusionInputs(text=asr, simulated=asr is not None, audio=audio, voice=voice,
                         vision=vision)
        )
    return batch(teacher), batch(student), S.labels[rows], S.speech[rows] >= 0


def _trim(feed: dict) -> dict:
    """Cut the audio padding to the longest row: most rows of a batch are short."""
    t = max(int(feed["audio_mask"].sum(1).max()), 1)
    return {**feed, "audio": feed["audio"][:, :t], "audio_mask": feed["audio_mask"][:, :t]}


# ---------------------------------------------------------------- losses


def _gauss(mean, log_var, y, weight):
    """L1 on the mean + Gaussian NLL on the log-variance (mean detached), masked."""
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
    """Fused + per-modality loss of one flow; also returns what distillation needs."""
    import torch

    h, mask, _, imagined, refined = model.encode(**feed)
    prior = model.text_prior(feed["text"], feed["present"])
    mean, log_var, means, log_vars, _ = model.heads_out(h, mask, prior)
    ones = torch.ones_like(y)
    loss = _gauss(mean, log_var, y, ones)
    for m in range(3):
        loss = loss + cfg.loss.modality * _gauss(means[:, m], log_vars[:, m], y, mask[:, m])
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
        loss = loss + cfg.loss.rnc * rnc_loss(
            torch.cat([z1, z2]), torch.cat([y, y]), cfg.loss.rnc_temperature
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
            mean, log_var, means, log_vars, w, _ = model(**_trim(part))
            outs.append((mean, log_var, means, log_vars, w))
    model.train()
    cat = [torch.cat([o[i] for o in outs]).numpy() for i in range(5)]
    return dict(
        zip(("mean", "log_var", "modality_mean", "modality_log_var", "weights"), cat, strict=True)
    )


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


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def elapsed(start: float) -> float:
    return round(time.perf_counter() - start, 1)


# ---------------------------------------------------------------- data


def corpus_data(cfg: TrainConfig):
    """(train Sentences, train Witnesses), {name: (Sentences, Witnesses)} for validation."""
    from edge_msa.data import banks, joint
    from edge_msa.data.labels import read_labels

    root = Path(cfg.data.root)
    cache = Path(cfg.data.spoken_cache) if cfg.data.spoken_cache else None
    texts = joint.TextBank()
    folded = (
        joint.FoldedTextBank([Path(d).expanduser() for d in cfg.data.text_folds])
        if cfg.data.text_folds
        else texts
    )
    voices = banks.voice_bank(root)

    def sentences(spec: SplitSpec, seed: int, bank=texts):
        rows = read_labels(root / spec.labels, spec.split)[: spec.limit]
        folder = joint.spoken_folder_for(root / spec.labels, spec.split, cache)
        return joint.load_sentences(rows, folder, bank, seed)

    train_parts = [sentences(s, cfg.seed + i, folded) for i, s in enumerate(cfg.data.train)]
    train = concat_sentences(train_parts)
    w_train = joint.Witnesses(
        banks.face_bank(root / cfg.data.faces_train), voices, cfg.data.disagree
    )
    w_valid = joint.Witnesses(
        banks.face_bank(root / cfg.data.faces_valid), voices, cfg.data.disagree
    )
    valid = {
        f"{Path(s.labels).parent.name}_{s.split}": (sentences(s, cfg.seed), w_valid)
        for s in cfg.data.valid
    }
    texts.save()
    if folded is not texts:
        folded.save()
    return (train, w_train), valid


def concat_sentences(parts):
    from edge_msa.data.joint import Sentences

    offsets = np.cumsum([0] + [len(p.audio) for p in parts])[:-1]
    return Sentences(
        ids=[i for p in parts for i in p.ids],
        labels=np.concatenate([p.labels for p in parts]),
        text=np.concatenate([p.text for p in parts]),
        text_dropped=np.concatenate([p.text_dropped for p in parts]),
        speech=np.concatenate(
            [np.where(p.speech >= 0, p.speech + o, -1) for p, o in zip(parts, offsets, strict=True)]
        ),
        asr_text=np.concatenate([p.asr_text for p in parts]),
        asr_state=np.concatenate([p.asr_state for p in parts]),
        audio=[a for p in parts for a in p.audio],
        voice_probs=np.concatenate([p.voice_probs for p in parts]),
    )


def validation_feeds(S, W, cfg: TrainConfig, seed: int) -> dict[str, tuple[dict, np.ndarray]]:
    """Fixed feeds per case: ``present`` (real text + audio + vision; every row),
    ``text`` (the real transcript alone, as ``eval text``), and on the spoken rows
    ``asr`` (the ASR transcript) and ``absent`` (no text), heard as ``eval speech``
    hears them: the rendering's own voice and no face. A voice drawn to match the
    label would tell the model the answer; selecting on it rewarded trusting it."""
    rng = np.random.default_rng(seed)
    # Spoken rows first: prediction chunks without audio are then cheap.
    everyone = np.argsort(S.speech < 0, kind="stable")
    f1, f2, y, speech = corpus_flows(S, W, everyone, rng, cfg, train=False)
    only_text = np.array([1, 0, 0], np.float32)
    out = {
        "present": (f1, y),
        "text": ({**f1, "present": f1["present"] * only_text}, y),
    }
    if speech.any():
        rows = np.flatnonzero(speech)
        heard = {k: v[rows] for k, v in f2.items()}
        heard["voice"] = S.voice_probs[S.speech[everyone[rows]]]
        heard["present"] = heard["present"] * np.array([1, 1, 0], np.float32)
        out["asr"] = (heard, y[rows])
        absent = {
            **heard,
            "text": np.zeros_like(heard["text"]),
            "present": heard["present"] * np.array([0, 1, 0], np.float32),
            "simulated": np.zeros_like(heard["simulated"]),
        }
        out["absent"] = (absent, y[rows])
    return out


# ---------------------------------------------------------------- loop


def training_data(cfg: TrainConfig):
    """(batcher, validation feeds, model dims) from the corpus or an MMSA pickle."""
    if cfg.data.source == "mmsa":
        from edge_msa.training.mmsa import mmsa_data

        return mmsa_data(cfg)
    (s_train, w_train), valid = corpus_data(cfg)
    valid_feeds = {name: validation_feeds(s, w, cfg, cfg.seed) for name, (s, w) in valid.items()}

    def batcher(rows, rng):
        return corpus_flows(s_train, w_train, rows, rng, cfg, train=True)

    batcher.speech = s_train.speech >= 0
    return batcher, valid_feeds, {}


def finished_run(cfg: TrainConfig) -> tuple[dict, dict]:
    """What :func:`train` returns, read back from a finished run's folder."""
    from edge_msa.config import ConfigError
    from edge_msa.training.export_fusion import load_checkpoint
    from edge_msa.training.fusion_net import parameter_count

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
    from edge_msa.training.fusion_net import build, parameter_count

    torch.set_num_threads(cfg.threads)
    seed_all(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "log.jsonl").unlink(missing_ok=True)  # a new run, a new log
    start = time.perf_counter()
    batcher, valid_feeds, dims = training_data(cfg)
    log.info("data ready in %.0f s", time.perf_counter() - start)
    model = build(dims, cfg.model.model_dump())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(cfg.seed)
    steps = cfg.epochs * len(epoch_batches(batcher.speech, cfg.batch_size, rng))
    history, best, step = [], math.inf, 0
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
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
            step += 1
        metrics = {
            name: {
                mode: _val_metrics(predict(model, feed), y, regression_metrics)
                for mode, (feed, y) in feeds.items()
            }
            for name, feeds in valid_feeds.items()
        }
        score = float(np.mean([m["mae"] for v in metrics.values() for m in v.values()]))
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
            "epoch %d loss %.3f valid mean MAE %.4f%s",
            epoch + 1,
            history[-1]["loss"],
            score,
            " (best)" if score < best else "",
        )
        if score < best:
            best = score
            torch.save(
                {"state": model.state_dict(), "dims": dims, "config": cfg.model_dump()},
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
    config_file: str | None = None,
    progress: bool = True,
    export_only: bool = False,
) -> dict:
    """Train (or, with ``export_only``, take the finished run in ``cfg.out``),
    then export to ``cfg.export`` (when set); returns a short report."""
    from edge_msa.training.export_fusion import export

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
            "corpus": "joint corpus, see edge_msa/training/joint.py: an approximation of real "
            "multimodal data (text, audio, faces and voices from different sources)"
            if cfg.data.source == "corpus"
            else f"MMSA features {cfg.data.mmsa_file}",
            "command": f"edge-msa train --config {config_file}"
            if config_file
            else "edge-msa train",
            "config": cfg.model_dump(),
            "text_folds": text_fold_info(cfg.data.text_folds),
            "params": report["params"],
            "train_seconds": report["train_seconds"],
            "history": [{k: h[k] for k in ("epoch", "loss", "score")} for h in report["history"]],
        }
        manifest = export(Path(cfg.out) / "best.pt", Path(cfg.export), valid_feeds, info)
        summary["export"] = cfg.export
        summary["variant"] = manifest["variant_choice"]
    return summary


def text_fold_info(dirs: list[str]) -> list[dict]:
    """What the manifest says of each cross-fitting text model."""
    from edge_msa.models import load_manifest

    out = []
    for d in dirs:
        m = load_manifest(Path(d).expanduser(), "scripts/train_text_fold.sh")
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


def _val_metrics(pred: dict, y: np.ndarray, regression_metrics) -> dict:
    m = regression_metrics(pred["mean"], y)
    std = np.exp(0.5 * pred["log_var"])
    err = np.abs(pred["mean"] - y)
    m["coverage_1sigma"] = float(np.mean(err <= std))
    m["coverage_2sigma"] = float(np.mean(err <= 2 * std))
    return m
