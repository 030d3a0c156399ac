"""Where the model store's files live: a local folder, or a prefix of an object store.

``model_store_url`` may be a path or an fsspec URL (``s3://bucket/prefix`` through s3fs,
``gs://bucket/prefix`` through gcsfs); every location is a ``upath.UPath``, which is a plain
``pathlib.Path`` for a local folder. Credentials and endpoints come from the cloud SDK's own
environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``...),
never from tfrelease's settings.

Object stores differ from a file system in two ways that matter here [S3 and GCS docs]: a
"folder" is a key prefix, visible as soon as its first object lands, and there is no rename
(a move is a copy then a delete). One object put is atomic: a reader sees the old object or
the new one. So a local folder is published by a rename, and an object-store version by being
listed in ``models.config`` after its upload was verified.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from upath import UPath

# Another process (a worker on another host) may have written since this one listed a prefix:
# s3fs and gcsfs cache listings by default, which would show the old state.
_OBJECT_STORE_OPTIONS = {"use_listings_cache": False}


def store_path(location: str | os.PathLike[str]) -> Path:
    """A model-store location as a path object: ``pathlib.Path`` for a local path or
    ``file://`` URL, a ``upath.UPath`` (same methods) for ``s3://``, ``gs://`` and the other
    fsspec protocols.

    Raises:
        ValueError: the URL's protocol is not one fsspec knows, or its package (s3fs, gcsfs)
            is not installed; the message names the URL.
    """
    text = os.fspath(location)
    if is_local_location(text):
        return Path(text.removeprefix("file://"))
    try:
        return UPath(text, **_OBJECT_STORE_OPTIONS)
    except (ValueError, ImportError) as error:
        raise ValueError(f"model store {text!r}: {error}") from None


def is_local_location(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is a local path (no ``scheme://``, or ``file://``)."""
    text = os.fspath(location)
    return "://" not in text or text.startswith("file://")


def is_local(path: Path) -> bool:
    """Whether ``path`` (from :func:`store_path`) is on the local file system, where a rename is
    atomic, rather than on an object store."""
    return not isinstance(path, UPath) or path.protocol in ("", "file", "local")


def remove_tree(path: Path) -> None:
    """Delete ``path`` and everything below it; a missing ``path`` is nothing to do.

    Raises:
        OSError: something could not be deleted.
    """
    if not path.exists():
        return
    if is_local(path):
        shutil.rmtree(path)
    else:
        path.fs.rm(path.path, recursive=True)


def move_tree(source: Path, target: Path) -> None:
    """Move the folder ``source`` to ``target``: one atomic rename locally; on an object store a
    copy of every object then a delete (not atomic: callers move only folders TF Serving does
    not list).

    Raises:
        OSError: the move failed; locally ``source`` is then untouched.
    """
    if is_local(source):
        source.rename(target)
        return
    source.fs.copy(source.path, target.path, recursive=True)
    source.fs.rm(source.path, recursive=True)


def move_path(source: Path, target: Path) -> None:
    """Move the file or folder ``source`` to ``target``, on one store or between two (a local
    ``incoming/`` and an ``s3://`` data store, say): a rename when both are local; otherwise each
    file is streamed to its new place, then the source deleted.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        OSError: the move failed; ``source`` is kept until every file was written.
    """
    if is_local(source) and is_local(target):
        shutil.move(source, target)
        return
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    for path in files:
        destination = target if path == source else target / path.relative_to(source).as_posix()
        if is_local(destination):
            destination.parent.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as reader, destination.open("wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
    if source.is_file():
        source.unlink()
    else:
        remove_tree(source)


@contextmanager
def readable(path: Path) -> Iterator[Path | BinaryIO]:
    """What pyarrow and pandas are given to read ``path``: the path itself when it is local
    (their native reader), else an open binary handle on the object (they take no ``UPath``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    if is_local(path):
        yield path
        return
    with path.open("rb") as handle:
        yield handle


def upload_tree(local: Path, target: Path, *, last: str | None = None) -> None:
    """Copy every file below the local folder ``local`` to ``target`` (same relative names),
    the file named ``last`` (relative to ``local``) after all the others: readers that take
    it as the sign of a complete folder never see it on a partial upload.

    Raises:
        OSError: a file could not be read or written; part of the tree may be there.
    """
    files = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    for relative in sorted(files, key=lambda name: name == last):
        path = local / relative
        if is_local(target):
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
        else:
            target.fs.put_file(str(path), f"{target.path}/{relative}")


@contextmanager
def local_copy(path: Path) -> Iterator[Path]:
    """``path`` itself when it is local; otherwise a temporary local copy of the folder, removed
    on exit. For readers that only open local files (TensorFlow's SavedModel loader).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        OSError: a file could not be downloaded.
    """
    if is_local(path):
        yield path
        return
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    with tempfile.TemporaryDirectory(prefix="tfrelease-download-") as folder:
        copy = Path(folder) / path.name
        path.fs.get(path.path, str(copy), recursive=True)
        yield copy
