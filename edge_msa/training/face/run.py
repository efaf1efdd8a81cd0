"""Train the expression CNN (resuming a run in ``state_dir``), then export it."""

from __future__ import annotations

from edge_msa.training.face.config import FaceConfig
from edge_msa.training.face.export import MODEL_FILE, export
from edge_msa.training.face.fit import train


def run(
    cfg: FaceConfig, command: str, progress: bool = True, export_only: bool = False
) -> dict:
    args = cfg.args()
    if not export_only:
        train(args)
    manifest = export(args, command)
    int8 = manifest["metrics_publictest"]["int8"]
    return {
        "out": str(args.out),
        "file": MODEL_FILE,
        "epochs_run": manifest["training"]["epochs_run"],
        "select_accuracy": int8["accuracy"],
        "select_uar": int8["uar"],
    }
