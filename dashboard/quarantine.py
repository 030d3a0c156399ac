"""Quarantined batches of a model and their Data Docs pages, as the nightly left them in ``quarantine/``.

Each quarantined entry sits beside ``<name>.validation.json`` (the validation result) and
``<name>.html`` (its Data Docs page), see ``tasks.validate.quarantine`` and ``report_paths``
(restated here: that module imports Prefect and pandas; tests/ui check they agree). Read-only.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from tasks.validation_report import ValidationReport

_FAILURES_SHOWN = 3


class QuarantinedBatch(BaseModel):
    """One quarantined entry: when it was quarantined (its file's modification time, UTC), why,
    and whether its Data Docs page exists."""

    model_config = ConfigDict(frozen=True)

    model: str
    name: str
    quarantined_at: datetime
    why: str
    has_report: bool


def quarantined_batches(folder: Path, model: str) -> list[QuarantinedBatch]:
    """The entries of ``folder`` (a model's ``quarantine/``), newest first; an absent folder has none."""
    if not folder.is_dir():
        return []
    entries = []
    for path in folder.iterdir():
        if _is_report(path):
            continue
        result, page = report_paths(path)
        entries.append(
            QuarantinedBatch(
                model=model,
                name=path.name,
                quarantined_at=datetime.fromtimestamp(path.lstat().st_mtime, UTC),
                why=_why(path.name, result),
                has_report=page.is_file(),
            )
        )
    return sorted(entries, key=lambda entry: (entry.quarantined_at, entry.name), reverse=True)


def report_page(folder: Path, name: str) -> Path | None:
    """The Data Docs page of the quarantined entry ``name`` in ``folder``, or None when there is
    no such entry or page. ``name`` must be an entry's exact name: nothing outside ``folder`` is
    ever returned."""
    if not folder.is_dir() or name not in {path.name for path in folder.iterdir() if not _is_report(path)}:
        return None
    page = report_paths(folder / name)[1]
    return page if page.is_file() else None


def report_paths(quarantined: Path) -> tuple[Path, Path]:
    """(``<name>.validation.json``, ``<name>.html``) beside a quarantined entry."""
    return quarantined.with_name(f"{quarantined.name}.validation.json"), quarantined.with_name(f"{quarantined.name}.html")


def _is_report(path: Path) -> bool:
    """Whether ``path`` is the validation result or Data Docs page of another entry beside it
    (a refused ``x.html`` is itself an entry, with ``x.html.html`` as its page)."""
    for suffix in (".validation.json", ".html"):
        if path.name.endswith(suffix) and path.is_file() and os.path.lexists(path.with_name(path.name.removesuffix(suffix))):
            return True
    return False


def _why(name: str, result_path: Path) -> str:
    """One line from the validation result: the refusal reason, the read error, or the failed expectations."""
    try:
        result = json.loads(result_path.read_text())
    except (OSError, ValueError):
        return "no readable validation result"
    if not isinstance(result, dict):
        return "no readable validation result"
    if "reason" in result:
        return str(result["reason"])
    if "results" not in result:
        return f"could not be read: {result.get('error', 'unknown error')}"
    return ValidationReport.from_result(name, result).describe(limit=_FAILURES_SHOWN)
