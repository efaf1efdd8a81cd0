"""Models: what edge_msa.models resolves, every file with the sha256 it was shipped with."""

from __future__ import annotations

import json
from pathlib import Path

from edge_msa.config import Config
from edge_msa.doctor.report import Check
from edge_msa.hashing import sha256_file
from edge_msa.models import (
    EXTERNAL,
    SHIPPED,
    External,
    ModelRoot,
    external_path,
    external_problem,
    models_root,
)

_REINSTALL = "pip install --force-reinstall edge-msa (in a checkout: git checkout -- models/)"


def check_models(cfg: Config) -> list[Check]:
    try:
        root = models_root()
    except FileNotFoundError as e:
        checks = [Check("FAIL", "models", str(e), "reinstall edge-msa, or pass --models DIR")]
    else:
        checks = [Check("ok", "models", f"{root.path} (from {root.source})")]
        folders = {root.path / n for n in SHIPPED}
        if root.path.is_dir():  # extra folders with a manifest are verified too
            folders |= {p.parent for p in root.path.glob("*/manifest.json")}
        if cfg.text.model_dir is not None:
            folders.add(Path(cfg.text.model_dir).expanduser())
        checks += [verify_folder(f, _fix(root)) for f in sorted(folders)]
    return [*checks, *(_external(ext) for ext in EXTERNAL)]


def verify_folder(folder: Path, fix: str = _REINSTALL) -> Check:
    """One verdict for a model folder: its manifest's sha256 map against the files."""
    name = f"model {folder.name}"
    manifest = folder / "manifest.json"
    if not folder.is_dir():
        return Check("FAIL", name, f"{folder} not found", fix)
    if not manifest.is_file():
        return Check("FAIL", name, f"{manifest} not found", fix)
    try:
        hashes = json.loads(manifest.read_text(encoding="utf-8")).get("sha256") or {}
    except (OSError, ValueError) as e:
        return Check("FAIL", name, f"{manifest} unreadable ({e})", fix)
    if not hashes:
        return Check(
            "warn",
            name,
            f"{manifest} records no sha256; files not verified",
            "regenerate the manifest with the training command",
        )
    missing = [f for f in hashes if not (folder / f).is_file()]
    if missing:
        return Check("FAIL", name, "missing " + ", ".join(str(folder / f) for f in missing), fix)
    bad = [f for f, want in hashes.items() if sha256_file(folder / f) != want]
    if bad:
        return Check(
            "FAIL",
            name,
            "sha256 mismatch: "
            + ", ".join(str(folder / f) for f in bad)
            + " (corrupt or changed since the manifest was written)",
            fix,
        )
    size = sum((folder / f).stat().st_size for f in hashes) / 1e6
    return Check("ok", name, f"{len(hashes)} file(s) verified in {folder} ({size:.1f} MB)")


def _fix(root: ModelRoot) -> str:
    if root.explicit:
        return (
            f"restore the folder in {root.path} (a copy of the installed models), "
            f"or leave out {root.source} to use the installed models"
        )
    return _REINSTALL + ", or retrain it"


def _external(ext: External) -> Check:
    name = f"model {ext.name}"
    try:
        path = external_path(ext)
        problem = external_problem(ext, path)
    except OSError as e:  # the library is absent, or the file unreadable
        return Check("FAIL", name, str(e), ext.install)
    if problem:
        return Check("FAIL", name, problem, ext.install)
    return Check("ok", name, f"{ext.distribution} {ext.version}, sha256 verified: {path}")
