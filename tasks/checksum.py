"""File checksums: how a SavedModel or a data batch is recognised later."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_sha256(folder: Path, exclude: tuple[str, ...] = ("assets.extra",)) -> str:
    """Hex SHA-256 over every file below ``folder`` (names and contents), except the
    top-level entries named in ``exclude``.

    ``assets.extra/`` is left out by default: the model card there is rewritten after
    registration, and TF Serving reads only its warm-up file from it.

    Raises:
        OSError: a file cannot be read.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if relative.parts[0] in exclude:
            continue
        digest.update(f"{relative.as_posix()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()
