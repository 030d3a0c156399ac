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


FILES_DIGEST_V2 = "v2:"
"""Prefix of the files digest that covers the warm-up requests too (:func:`files_digest`);
a recorded digest without it is :func:`tree_sha256`'s, which leaves all of ``assets.extra/`` out."""
_REWRITTEN = "assets.extra/model_card.json"  # rewritten at every status change, by design


def files_digest(folder: Path) -> str:
    """``v2:`` and a hex SHA-256 over every file below ``folder`` (names and contents) but the
    model card: the graph, the weights and the warm-up requests TF Serving replays.

    Raises:
        OSError: a file cannot be read.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative != _REWRITTEN:
            digest.update(f"{relative}\0{file_sha256(path)}\n".encode())
    return FILES_DIGEST_V2 + digest.hexdigest()


def files_unchanged(folder: Path, recorded: str) -> bool:
    """Whether ``folder`` still has the files whose digest was ``recorded`` at registration,
    by the scheme that recorded it (:func:`files_digest`, or :func:`tree_sha256` for versions
    registered before the warm-up requests were covered).

    Raises:
        OSError: a file cannot be read.
    """
    if recorded.startswith(FILES_DIGEST_V2):
        return files_digest(folder) == recorded
    return tree_sha256(folder) == recorded
