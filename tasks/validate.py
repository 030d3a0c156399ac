"""Validation: every new batch is checked against its data contract (a Great Expectations suite).

A batch that passes moves to ``accepted/``; one that fails moves to ``quarantine/`` beside its
validation result (``<file>.validation.json``) and a Data Docs page (``<file>.html``), and the
run fails with a ``DataValidationError`` naming each file and what it broke. An entry of
``incoming/`` that is not a batch file (a directory, another suffix), and a batch whose name an
accepted batch with other bytes already has, are refused: quarantined the same way, with a
report saying why.

Great Expectations runs in its own worker process (``tasks.gx_worker``): importing it takes
5-9 s, which this process never pays, and which a night spends while it imports TensorFlow.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from core.files import write_text_atomically
from core.store_location import move_path
from tasks import gx_worker
from tasks.data import DataError, DataFolders, accept_batch, clashes_with_accepted, not_a_batch, read_batch
from tasks.gx_worker import SuiteError
from tasks.steps import step
from tasks.validation_report import FailedExpectation, ValidationReport, render_data_docs

logger = logging.getLogger(__name__)

MESSAGE_FAILURES_PER_BATCH = 5  # the error message lists this many; the report has them all
NOT_A_BATCH = "not_a_batch_file"  # the "failed expectation" of a refused entry that is no batch file
NAME_TAKEN = "batch_name_already_accepted"  # ... and of a batch whose name an accepted batch has


class DataValidationError(Exception):
    """One or more batches broke their data contract and were quarantined.

    ``failures`` holds ``(report, quarantined batch path)`` pairs; the message names each file,
    its failed expectations and where its reports are.
    """

    def __init__(self, message: str, failures: Sequence[tuple[ValidationReport, Path]] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


def load_suite(suite_path: Path) -> dict[str, Any]:
    """Read a GX 1.x suite JSON file (``{"name", "expectations": [{"type", "kwargs", ...}]}``).

    Raises:
        SuiteError: the file is missing, not JSON, or lacks ``name`` / ``expectations``.
    """
    try:
        data = json.loads(Path(suite_path).read_text())
    except FileNotFoundError:
        raise SuiteError(f"expectation suite file {suite_path} does not exist") from None
    except (OSError, ValueError) as error:
        raise SuiteError(f"expectation suite file {suite_path} is not readable JSON: {error}") from error
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("name"), str)
        or not isinstance(data.get("expectations"), list)
        or not all(isinstance(e, dict) for e in data["expectations"])
    ):
        raise SuiteError(f"expectation suite file {suite_path} must be an object with a 'name' and a list of 'expectations' objects")
    return data


def validate_batch(frame: pd.DataFrame, suite_path: Path, batch_name: str) -> ValidationReport:
    """Validate one batch against the suite in ``suite_path`` with Great Expectations 1.x.

    Args:
        frame: the batch, any shape and dtypes (for digits: ``pixel_0..pixel_63`` float64
            0-16 and ``label`` int64 0-9); not modified.
        suite_path: a suite JSON file (see ``expectations.suite_path``).
        batch_name: names the batch in the report and in Data Docs, usually the file name.

    Returns:
        The report; ``success`` is False when any expectation fails, including one that could
        not be evaluated (e.g. on a missing column). Takes about 1 s for 198 expectations on
        900 rows, plus the GX worker's start (5-9 s) on a process's first call unless
        ``gx_worker.start`` began it earlier.

    Raises:
        SuiteError: the suite file is missing or invalid, or GX refuses an expectation in it.
        gx_worker.WorkerDied: the GX worker process ended (killed, out of memory) before it answered.

    Side effects: none on disk. The worker's one in-memory GX context keeps the suite and its
    pandas data source for later calls (built again when the file's contents change) and holds
    a data asset and a validation definition only during the call; calls from several threads
    take turns.
    """
    return ValidationReport.from_result(batch_name, gx_worker.validate(frame, load_suite(suite_path), str(suite_path), batch_name))


def quarantine(batch_path: Path, report: ValidationReport, quarantine_dir: Path) -> Path:
    """Move a failed batch (or a refused entry of ``incoming/``) into ``quarantine_dir`` with its
    reports; return its new path.

    Writes ``<name>.validation.json`` (``report.result``, indented) and ``<name>.html`` (the
    Data Docs page, see ``render_data_docs``; for a refused entry, a plain page saying why)
    first, each through a temporary file and a rename, and moves the entry last, so a crash
    never loses it. A directory moves as a whole, a link as a link. ``quarantine_dir`` is
    created. When ``<name>`` (or its reports) already exist there, the entry is renamed
    ``<stem>.1<suffix>``, ``<stem>.2<suffix>``, ...: nothing is overwritten.

    Raises:
        FileNotFoundError: ``batch_path`` does not exist (nothing is written).
    """
    if not (batch_path.exists() or batch_path.is_symlink()):
        raise FileNotFoundError(f"cannot quarantine {batch_path}: no such file or directory")
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    target = _free_quarantine_name(quarantine_dir / batch_path.name)
    page = _refusal_page(report) if refusal_reason(report) else gx_worker.call(render_data_docs, report)
    write_text_atomically(report_paths(target)[0], json.dumps(report.result, indent=2, default=str) + "\n")
    write_text_atomically(report_paths(target)[1], page)
    move_path(batch_path, target)
    return target


def report_paths(quarantined: Path) -> tuple[Path, Path]:
    """(``<file>.validation.json``, ``<file>.html``) beside a quarantined batch."""
    return quarantined.with_name(f"{quarantined.name}.validation.json"), quarantined.with_name(f"{quarantined.name}.html")


def refusal_report(path: Path, suite_name: str, kind: str, reason: str) -> ValidationReport:
    """The failed report of an entry of ``incoming/`` refused without validation: ``kind`` is
    ``NOT_A_BATCH`` or ``NAME_TAKEN``, ``reason`` one sentence naming the entry and the problem.
    ``result`` is ``{"success": false, "refused": kind, "reason": reason, ...}``."""
    problem = FailedExpectation(type=kind, column=None, summary=reason)
    result = {"success": False, "suite_name": suite_name, "batch_name": path.name, "refused": kind, "reason": reason}
    return ValidationReport(batch_name=path.name, suite_name=suite_name, success=False, evaluated=0, failed=[problem], result=result)


def refusal_reason(report: ValidationReport) -> str | None:
    """Why the entry of ``report`` was refused without validation (see :func:`refusal_report`), or None."""
    return report.result.get("reason") if report.result.get("refused") else None


def raise_for_failures(failures: Sequence[tuple[ValidationReport, Path]]) -> None:
    """Raise ``DataValidationError`` when any batch was quarantined; do nothing for ``[]``.

    ``failures`` are ``(report, quarantined batch path)`` pairs. The message has one line per
    batch, e.g. ``batch digits-batch-0003.parquet failed 2 of 198 expectations:
    expect_column_values_to_be_between(pixel_5): 43 of 300 values outside [0, 16] (e.g. 17);
    ... — quarantined at <path> (report: <path>.html)``, listing at most
    ``MESSAGE_FAILURES_PER_BATCH`` expectations per batch. A refused entry's line is its
    reason, e.g. ``x.csv is a directory, not a batch file (...) — quarantined at ...``, and
    then the first line counts "incoming entries" rather than "batches".
    """
    if not failures:
        return
    many = len(failures) > 1
    if any(refusal_reason(report) for report, _ in failures):
        head = f"{len(failures)} incoming entr{'ies' if many else 'y'} could not be accepted and {'were' if many else 'was'} quarantined:"
    else:
        head = f"{len(failures)} batch{'es' if many else ''} broke the data contract and {'were' if many else 'was'} quarantined:"
    lines = [head]
    for report, path in failures:
        what = refusal_reason(report) or f"batch {report.batch_name} {report.describe(limit=MESSAGE_FAILURES_PER_BATCH)}"
        lines.append(f"{what} — quarantined at {path} (report: {report_paths(path)[1]})")
    raise DataValidationError("\n".join(lines), failures)


def screen_batches(
    batches: Sequence[Path], suite_path: Path, folders: DataFolders, record: Callable[[Path], object] | None = None
) -> list[Path]:
    """Validate each batch file; accept the good ones, quarantine the bad ones, then raise.

    ``batches`` are the entries waiting in ``incoming/`` (see ``collect_incoming``). Each
    batch file is read (Parquet or CSV) and validated on its own. A passing file moves to
    ``folders.accepted`` (the same bytes as an accepted batch of that name: it is dropped); a
    failing or unreadable one moves to ``folders.quarantine`` with its reports. Refused without
    validation and quarantined the same way, with a report saying why: an entry that is not a
    batch file (a directory moves as a whole) and a batch whose name an accepted batch with
    other bytes already has. Passing batches are accepted even when another entry fails, and a
    quarantined entry is gone from ``incoming/``: the next night does not see it again.
    ``record``, when given, is called with each accepted path right after its move (the
    nightly's ``tasks.batches.BatchRecorder``: the batch's SHA-256 and row count go to the
    registry then, once).

    Returns:
        The accepted paths, in input order (only when every batch passed).

    Raises:
        DataValidationError: at least one entry was quarantined; raised after every entry was
            handled. The message names each one and why.
        SuiteError: the suite is unusable (nothing is moved).
    """
    suite_name = load_suite(suite_path)["name"]
    accepted: list[Path] = []
    failures: list[tuple[ValidationReport, Path]] = []
    for path in batches:
        report = _screen(path, suite_path, suite_name, folders)
        if report.success:
            try:
                accepted.append(accept_batch(path, folders))
            except DataError as clash:  # accepted/ changed since _screen looked: refuse it all the same
                report = refusal_report(path, suite_name, NAME_TAKEN, str(clash))
            else:
                logger.info("accepted %s: %s", path.name, report.describe())
                if record is not None:
                    record(accepted[-1])
                continue
        failures.append((report, quarantine(path, report, folders.quarantine)))
        logger.warning("quarantined %s: %s", path.name, refusal_reason(report) or report.describe(limit=MESSAGE_FAILURES_PER_BATCH))
    raise_for_failures(failures)
    return accepted


def _screen(path: Path, suite_path: Path, suite_name: str, folders: DataFolders) -> ValidationReport:
    """The report on one incoming entry: refused, unreadable, or validated against the suite."""
    reason = not_a_batch(path)
    if reason:
        return refusal_report(path, suite_name, NOT_A_BATCH, reason)
    reason = clashes_with_accepted(path, folders)
    if reason:
        return refusal_report(path, suite_name, NAME_TAKEN, reason)
    try:
        return validate_batch(read_batch(path), suite_path, path.name)
    except DataError as error:
        return ValidationReport.unreadable(path.name, suite_name, error)


def _refusal_page(report: ValidationReport) -> str:
    """The plain HTML page beside a refused entry: what it is and why it was not accepted."""
    name, reason = html.escape(report.batch_name), html.escape(refusal_reason(report) or "")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{name}: refused</title></head><body>"
        f"<h1>{name} was not accepted</h1><p>{reason}.</p>"
        f"<p>It was moved here unchanged; nothing was trained on it. The same reason is in {name}.validation.json.</p>"
        "</body></html>\n"
    )


def _free_quarantine_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists() or candidate.is_symlink() or any(p.exists() for p in report_paths(candidate)):
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
        n += 1
    return candidate


validate_batch_task = step(validate_batch, name="validate-batch")
quarantine_task = step(quarantine, name="quarantine-batch")
screen_batches_task = step(screen_batches, name="screen-batches")
