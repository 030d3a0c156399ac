"""Atomic file writes: a reader sees the old file or the new one, never half of one.

TF Serving polls ``models.config``, the nightly run reads batch files, people read model cards
and changelogs: every file tfrelease writes for another reader goes through here. On an object
store (a ``upath.UPath`` from :mod:`core.store_location`) the file is one object put, which
S3 and GCS make visible whole or not at all.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from core.store_location import is_local


def write_atomically(path: Path, write: Callable[[Path], None], *, mode: int = 0o644) -> None:
    """Have ``write`` fill a temporary file beside ``path``, fsync it, then rename it over ``path``.

    The temporary file is hidden (``.<name>.<random>``), so folder scanners that skip dot
    files (TF Serving, the batch collector) never see it. ``mode`` is the final permission
    (``mkstemp`` makes 0600; TF Serving may run as another user). The parent folder is
    created. Whatever ``write`` raises, the temporary file is removed and ``path`` is untouched.

    Raises:
        OSError: the file cannot be written or renamed; ``path`` is unchanged.
    """
    if not is_local(path):
        _put_whole(path, write)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        write(temporary)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _put_whole(path: Path, write: Callable[[Path], None]) -> None:
    """Have ``write`` fill a local temporary file, then upload it to the object ``path`` in one put."""
    with tempfile.TemporaryDirectory(prefix="tfrelease-put-") as folder:
        temporary = Path(folder) / path.name
        write(temporary)
        path.fs.put_file(str(temporary), path.path)


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`write_atomically`).

    Raises:
        OSError: the file cannot be written or renamed; ``path`` is unchanged.
    """
    write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
