"""The expression CNN's training loop: resumable, on a step or wall-clock schedule."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from edge_msa.config import ConfigError
from edge_msa.training.face.data import augment, centre, class_weights, cutmix, load_split
from edge_msa.training.face.distill import Teachers
from edge_msa.training.face.net import FaceNet, build_net, finished_run, load_best
from edge_msa.types import FACE_EMOTIONS


def lr_at(progress: float, peak: float, warmup: float) -> float:
    if progress < warmup:
        return peak * (0.1 + 0.9 * progress / warmup)
    p = min(1.0, (progress - warmup) / (1 - warmup))
    return peak * 0.5 * (1 + math.cos(math.pi * p))


def make_optimizer(net: nn.Module, args: SimpleNamespace) -> torch.optim.Optimizer:
    decay = [p for p in net.parameters() if p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.SGD(groups, lr=args.lr, momentum=0.9, nesterov=True)


@torch.no_grad()
def evaluate(net: FaceNet, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    net.eval()
    preds, preds_flip = [], []
    for i in range(0, len(images), 512):
        x = centre(images[i : i + 512]).contiguous(memory_format=torch.channels_last)
        logits, _ = net(x)
        logits_f, _ = net(torch.flip(x, dims=[3]))
        preds.append(logits.argmax(1))
        preds_flip.append((logits + logits_f).argmax(1))
    net.train()
    acc_flip, uar_flip = accuracy_uar(torch.cat(preds_flip), labels)
    return {
        "acc": accuracy_uar(torch.cat(preds), labels)[0],
        "acc_flip": acc_flip,
        "uar_flip": uar_flip,
    }


def accuracy_uar(pred: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    acc = (pred == labels).float().mean().item()
    recalls = [
        (pred[labels == c] == c).float().mean().item()
        for c in range(len(FACE_EMOTIONS))
        if (labels == c).any()
    ]
    return round(acc, 4), round(float(np.mean(recalls)), 4)


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def train(args: SimpleNamespace) -> None:
    args.state.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    images, labels = load_split(args.data / args.train_file, "train_file")
    val_images, val_labels = load_split(args.data / args.select_file, "select_file")
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    net = build_net(args).to(memory_format=torch.channels_last)
    opt = make_optimizer(net, args)
    loss_fn = nn.CrossEntropyLoss(
        weight=class_weights(labels, args.class_weight_power), label_smoothing=args.label_smoothing
    )
    teachers = Teachers(args.teachers, args.distill_t) if args.teachers else None
    state = resume(net, opt, gen, args)
    if args.init and not state["history"]:
        net.load_state_dict(start_from(args.init).state_dict())
    state.setdefault("train_faces", len(images))
    steps_per_epoch = math.ceil(len(images) / args.batch_size)
    n_params = sum(p.numel() for p in net.parameters())
    log(f"params {n_params}, {steps_per_epoch} steps/epoch, start epoch {state['epoch']}")
    while not finished(state, args, steps_per_epoch):
        torch.set_num_threads(args.threads)
        t_epoch = time.time()
        order = torch.randperm(len(images), generator=gen)
        total_loss, n_steps = 0.0, 0
        for i in range(steps_per_epoch):
            progress = schedule_progress(state, args, steps_per_epoch, time.time() - t_epoch)
            if progress >= 1.0:
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(progress, args.lr, args.warmup)
            idx = order[i * args.batch_size : (i + 1) * args.batch_size]
            x, clean = augment(images[idx], gen, args.erase_p, args.camera, tuple(args.zoom))
            y, other, own = labels[idx], None, 1.0
            if args.cutmix and float(torch.rand(1, generator=gen)) < args.cutmix:
                # One box pasted into both views, so the teachers read the same mix.
                mixed, other, own = cutmix(torch.cat([x, clean], dim=1), gen)
                x, clean = mixed[:, :1], mixed[:, 1:]
            logits, _ = net(x.contiguous(memory_format=torch.channels_last))
            loss = loss_fn(logits, y)
            if other is not None:
                loss = own * loss + (1 - own) * loss_fn(logits, y[other])
            if teachers is not None:
                clean = clean.contiguous(memory_format=torch.channels_last)
                loss = (1 - args.distill) * loss + args.distill * teachers.loss(logits, clean)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += loss.item()
            n_steps += 1
            state["step"] += 1
        state["elapsed"] += time.time() - t_epoch
        state["epoch"] += 1
        metrics = evaluate(net, val_images, val_labels)
        entry = {
            "epoch": state["epoch"],
            "loss": round(total_loss / max(1, n_steps), 4),
            "lr": round(opt.param_groups[0]["lr"], 5),
            "epoch_s": round(time.time() - t_epoch, 1),
            "threads": torch.get_num_threads(),
            **metrics,
        }
        state["history"].append(entry)
        log(json.dumps(entry))
        if metrics["acc_flip"] > state["best"].get("acc_flip", -1):
            state["best"] = entry
            torch.save(net.state_dict(), args.state / "best.pt")
        save_checkpoint(net, opt, gen, state, args)
    log(f"done: best {json.dumps(state['best'])}")


def start_from(state: Path) -> FaceNet:
    if not finished_run(state):
        raise ConfigError(
            f"init: {state} holds no finished run (history.json and best.pt); train it first "
            "or rebuild it from a model folder with `edge-msa train face --recover`"
        )
    return load_best(state)[0]


def schedule_progress(
    state: dict, args: SimpleNamespace, steps_per_epoch: int, epoch_elapsed: float
) -> float:
    if args.time_budget_min:
        return (state["elapsed"] + epoch_elapsed) / (args.time_budget_min * 60)
    return state["step"] / (args.epochs * steps_per_epoch)


def finished(state: dict, args: SimpleNamespace, steps_per_epoch: int) -> bool:
    return schedule_progress(state, args, steps_per_epoch, 0.0) >= 1.0


def resume(
    net: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator, args: SimpleNamespace
) -> dict:
    path = args.state / "last.pt"
    if not path.exists():
        return {"epoch": 0, "step": 0, "elapsed": 0.0, "history": [], "best": {}}
    ckpt = torch.load(path, weights_only=False)
    net.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    gen.set_state(ckpt["generator"])
    log(f"resumed from epoch {ckpt['state']['epoch']}")
    return ckpt["state"]


def save_checkpoint(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    state: dict,
    args: SimpleNamespace,
) -> None:
    ckpt = {
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "generator": gen.get_state(),
        "state": state,
        "args": args.record,
    }
    tmp = args.state / "last.pt.tmp"
    torch.save(ckpt, tmp)
    tmp.replace(args.state / "last.pt")
    (args.state / "history.json").write_text(json.dumps({"args": args.record, **state}, indent=1))
