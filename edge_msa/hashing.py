"""File digests: the one sha256 helper that manifests, caches and checks use."""

from __future__ import annotations

import hashlib
from pathlib import Path

_BLOCK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (model files run to tens of MB)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(_BLOCK), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_prefix(path: str | Path, chars: int = 8) -> str:
    """The first ``chars`` hex digits: enough to key a cache by the model that filled it."""
    return sha256_file(path)[:chars]
