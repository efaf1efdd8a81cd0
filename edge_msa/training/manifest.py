"""The one way a trainer writes its model's ``manifest.json``.

Every manifest says what the model was trained on (``data``), how to make it
again (``command``, run from the checkout), at which ``git_revision``, what
it scored (a ``metrics`` key, or keys starting with ``metrics``), and the
``sha256`` of every file that ships; the runtime and ``edge-msa doctor``
check those digests.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path

from edge_msa.hashing import sha256_file

# Kept verbatim: rounding a config would turn lr 1e-5 into 0.0.
UNROUNDED = ("config",)


def git_revision(cwd: str | Path | None = None) -> str:
    """HEAD of the checkout the command runs in, with ``+dirty`` when it has
    uncommitted changes; ``unknown`` outside a checkout or without git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=cwd, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def rounded(obj):
    """Floats to 4 decimals, through dicts and lists, so manifests stay readable."""
    if isinstance(obj, float):
        return round(obj, 4)
    if isinstance(obj, dict):
        return {k: rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [rounded(v) for v in obj]
    return obj


def train_command(kind: str, config: str | Path | None, overrides: Iterable[str] = ()) -> str:
    """The command line that reproduces a run."""
    parts = ["edge-msa", "train", kind]
    if config is not None:
        parts += ["--config", str(config)]
    for item in overrides:
        parts += ["--set", _quote(item)]
    return " ".join(parts)


def _quote(item: str) -> str:
    import shlex

    return shlex.quote(item)


def write_manifest(out_dir: Path, manifest: dict, files: Iterable[str]) -> dict:
    """Add ``git_revision`` and the ``sha256`` of ``files`` (names in ``out_dir``),
    write ``out_dir/manifest.json`` and return what was written."""
    missing = [k for k in ("data", "command") if k not in manifest]
    if missing or not any(k.startswith("metrics") for k in manifest):
        lacks = ", ".join(missing) or "metrics"
        raise ValueError(f"a manifest needs data, command and metrics; this one lacks {lacks}")
    out_dir = Path(out_dir)
    out = {
        **{k: v if k in UNROUNDED else rounded(v) for k, v in manifest.items()},
        "git_revision": git_revision(),
        "sha256": {name: sha256_file(out_dir / name) for name in files},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").write_text(json.dumps(out, indent=2) + "\n")
    return out
