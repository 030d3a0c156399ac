"""Validation: every new batch is checked against its data contract (a Great Expectations suite).

A batch that passes moves to ``accepted/``; one that fails moves to ``quarantine/`` beside its
validation result (``<file>.validation.json``) and a Data Docs page (``<file>.html``), and the
run fails with a ``DataValidationError`` naming each file and what it broke.

``great_expectations`` takes 5-9 s to import: it is imported inside the functions that use
it, never at module import, so that this module stays cheap for the CLI and the Slack receiver.
"""

from __future__ import annotations

import html
import json
import logging
import math
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict

from core.files import write_text_atomically
from tasks.data import DataError, DataFolders, accept_batch, read_batch
from tasks.steps import step

logger = logging.getLogger(__name__)

RESULT_FORMAT = "SUMMARY"  # observed values, unexpected counts and up to 20 example values
MESSAGE_FAILURES_PER_BATCH = 5  # the error message lists this many; the report has them all
COULD_NOT = "could not be evaluated"


class SuiteError(Exception):
    """An expectation suite file is missing, is not valid JSON, or GX refuses its contents."""


class DataValidationError(Exception):
    """One or more batches broke their data contract and were quarantined.

    ``failures`` holds ``(report, quarantined batch path)`` pairs; the message names each file,
    its failed expectations and where its reports are.
    """

    def __init__(self, message: str, failures: Sequence[tuple[ValidationReport, Path]] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


class FailedExpectation(BaseModel):
    """One expectation a batch did not meet."""

    model_config = ConfigDict(frozen=True)

    type: str  # e.g. "expect_column_values_to_be_between"
    column: str | None  # None for table-level expectations
    summary: str  # e.g. "43 of 300 values outside [0, 16] (e.g. 17, -1)"
    notes: str | None = None  # why the expectation exists, from the suite

    def describe(self) -> str:
        target = f"({self.column})" if self.column else ""
        return f"{self.type}{target}: {self.summary}"


class ValidationReport(BaseModel):
    """The outcome of validating one batch against one suite.

    ``result`` is GX's ``ExpectationSuiteValidationResult.to_json_dict()`` (JSON-able); for a
    batch that could not even be read it is ``{"success": false, "error": ...}`` instead.
    """

    model_config = ConfigDict(frozen=True)

    batch_name: str
    suite_name: str
    success: bool
    evaluated: int  # number of expectations evaluated
    failed: list[FailedExpectation]
    result: dict[str, Any]

    @classmethod
    def from_result(cls, batch_name: str, result: dict[str, Any]) -> ValidationReport:
        """Build a report from a GX suite validation result in JSON-dict form."""
        failed = [_failed_expectation(evr) for evr in result.get("results", []) if not evr.get("success")]
        # Table-level first, then columns; "could not be evaluated" (e.g. on a missing column) last.
        failed.sort(key=lambda f: (f.column is not None, f.summary.startswith(COULD_NOT)))
        statistics = result.get("statistics") or {}
        return cls(
            batch_name=batch_name,
            suite_name=str(result.get("suite_name", "")),
            success=bool(result.get("success")),
            evaluated=int(statistics.get("evaluated_expectations", len(result.get("results", [])))),
            failed=failed,
            result=result,
        )

    @classmethod
    def unreadable(cls, batch_name: str, suite_name: str, error: Exception) -> ValidationReport:
        """A failed report for a batch file that could not be read at all."""
        problem = FailedExpectation(type="read_batch", column=None, summary=str(error))
        result = {"success": False, "suite_name": suite_name, "batch_name": batch_name, "error": str(error)}
        return cls(batch_name=batch_name, suite_name=suite_name, success=False, evaluated=0, failed=[problem], result=result)

    def headline(self) -> str:
        """``passed all 198 expectations``, ``failed 2 of 198 expectations`` or ``could not be read``."""
        if self.success:
            return f"passed all {self.evaluated} expectations"
        if "results" not in self.result:
            return "could not be read"
        return f"failed {len(self.failed)} of {self.evaluated} expectations"

    def describe(self, limit: int | None = None) -> str:
        """One line: ``failed 2 of 198 expectations: type(column): summary; ...`` (or the headline)."""
        if self.success:
            return self.headline()
        if "results" not in self.result:
            return f"{self.headline()}: " + "; ".join(f.summary for f in self.failed)
        shown = self.failed if limit is None else self.failed[:limit]
        text = f"{self.headline()}: " + "; ".join(f.describe() for f in shown)
        if len(shown) < len(self.failed):
            text += f"; and {len(self.failed) - len(shown)} more"
        return text


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
        900 rows, plus the one-off GX import (5-9 s).

    Raises:
        SuiteError: the suite file is missing or invalid, or GX refuses an expectation in it.

    Side effects: none on disk; an in-memory (ephemeral) GX context is built per call.
    """
    suite_data = load_suite(suite_path)
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    context = _ephemeral_context()
    try:
        suite = gx.ExpectationSuite(**suite_data)
    except Exception as error:  # GX raises many types for an unknown key or bad kwargs
        raise SuiteError(f"expectation suite file {suite_path} is not a valid GX 1.x suite: {type(error).__name__}: {error}") from error
    # GX logs an invalid expectation (unknown type, bad kwargs) and drops it from the suite:
    # a typo must not silently weaken the contract.
    dropped = Counter(str(e.get("type")) for e in suite_data["expectations"]) - Counter(e.expectation_type for e in suite.expectations)
    if dropped:
        raise SuiteError(f"expectation suite file {suite_path} has invalid expectations GX refused: {', '.join(sorted(dropped.elements()))}")
    suite = context.suites.add(suite)
    batch_definition = (
        context.data_sources.add_pandas("batches").add_dataframe_asset(batch_name).add_batch_definition_whole_dataframe("whole")
    )
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=batch_name, data=batch_definition, suite=suite))
    # Most batches pass: a BOOLEAN_ONLY pass costs about a third of a SUMMARY one; the
    # details (observed values, unexpected counts) are computed only for a failing batch.
    def run(result_format: str):
        return definition.run(
            batch_parameters={"dataframe": frame}, result_format=result_format, run_id=RunIdentifier(run_name=batch_name)
        )

    result = run("BOOLEAN_ONLY")
    if not result.success:
        result = run(RESULT_FORMAT)
    # A JSON round trip turns the numpy scalars GX leaves in to_json_dict() into plain floats
    # (GX's own Data Docs renderer chokes on numpy 2 scalars) and makes the report portable.
    return ValidationReport.from_result(batch_name, json.loads(json.dumps(result.to_json_dict())))


def render_data_docs(report: ValidationReport) -> str:
    """The GX Data Docs HTML page of ``report``'s validation result, as build_data_docs renders it.

    Uses GX's ``ValidationResultsPageRenderer`` and ``DefaultJinjaPageView`` directly, with a
    "Why this batch was quarantined" section added after the overview (listing each failed
    expectation by type and column). Styles and scripts load from public CDNs, as in any
    Data Docs page; the site's navigation links ("Home") lead nowhere in a standalone page.
    A report without a GX result (an unreadable file) gets a plain page with the same list.
    """
    if "results" not in report.result:
        return _plain_page(report, reason=None)
    try:
        from great_expectations.core.expectation_validation_result import (
            expectationSuiteValidationResultSchema,
        )
        from great_expectations.render.components import (
            RenderedBulletListContent,
            RenderedSectionContent,
        )
        from great_expectations.render.renderer import ValidationResultsPageRenderer
        from great_expectations.render.view import DefaultJinjaPageView

        result = expectationSuiteValidationResultSchema.load(report.result)
        document = ValidationResultsPageRenderer().render(result)
        if report.failed:
            # GX shows an expectation's notes on suite pages only: show why each broken one exists.
            bullets = [
                html.escape(f.describe()) + (f'<br><small class="text-muted">Why: {html.escape(f.notes)}</small>' if f.notes else "")
                for f in report.failed
            ]
            why = RenderedBulletListContent(
                bullet_list=bullets,
                header=html.escape(f"Batch {report.batch_name} {report.headline()} of suite {report.suite_name}"),
                styling={"classes": ["col-12", "mt-1"], "body": {"classes": ["text-danger"]}},
            )
            document.sections.insert(1, RenderedSectionContent(section_name="Why this batch was quarantined", content_blocks=[why]))
        return DefaultJinjaPageView().render(document)
    except Exception as error:  # a page that shows the failures beats no page; the JSON has everything
        logger.warning("Data Docs rendering failed for %s (%s: %s); writing a plain page", report.batch_name, type(error).__name__, error)
        return _plain_page(report, reason=f"Data Docs rendering failed: {type(error).__name__}: {error}")


def quarantine(batch_path: Path, report: ValidationReport, quarantine_dir: Path) -> Path:
    """Move a failed batch into ``quarantine_dir`` with its reports; return its new path.

    Writes ``<name>.validation.json`` (``report.result``, indented) and ``<name>.html`` (the
    Data Docs page, see ``render_data_docs``) first, each through a temporary file and a
    rename, and moves the batch last, so a crash never loses the batch. ``quarantine_dir`` is
    created. When ``<name>`` (or its reports) already exist there, the batch is renamed
    ``<stem>.1<suffix>``, ``<stem>.2<suffix>``, ...: nothing is overwritten.

    Raises:
        FileNotFoundError: ``batch_path`` does not exist (nothing is written).
    """
    if not batch_path.is_file():
        raise FileNotFoundError(f"cannot quarantine {batch_path}: no such file")
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    target = _free_quarantine_name(quarantine_dir / batch_path.name)
    write_text_atomically(report_paths(target)[0], json.dumps(report.result, indent=2, default=str) + "\n")
    write_text_atomically(report_paths(target)[1], render_data_docs(report))
    shutil.move(batch_path, target)
    return target


def report_paths(quarantined: Path) -> tuple[Path, Path]:
    """(``<file>.validation.json``, ``<file>.html``) beside a quarantined batch."""
    return quarantined.with_name(f"{quarantined.name}.validation.json"), quarantined.with_name(f"{quarantined.name}.html")


def raise_for_failures(failures: Sequence[tuple[ValidationReport, Path]]) -> None:
    """Raise ``DataValidationError`` when any batch was quarantined; do nothing for ``[]``.

    ``failures`` are ``(report, quarantined batch path)`` pairs. The message has one line per
    batch, e.g. ``batch digits-batch-0003.parquet failed 2 of 198 expectations:
    expect_column_values_to_be_between(pixel_5): 43 of 300 values outside [0, 16] (e.g. 17);
    ... — quarantined at <path> (report: <path>.html)``, listing at most
    ``MESSAGE_FAILURES_PER_BATCH`` expectations per batch.
    """
    if not failures:
        return
    count = f"{len(failures)} batch{'es' if len(failures) > 1 else ''}"
    lines = [f"{count} broke the data contract and {'were' if len(failures) > 1 else 'was'} quarantined:"]
    for report, path in failures:
        lines.append(
            f"batch {report.batch_name} {report.describe(limit=MESSAGE_FAILURES_PER_BATCH)}"
            f" — quarantined at {path} (report: {report_paths(path)[1]})"
        )
    raise DataValidationError("\n".join(lines), failures)


def screen_batches(batches: Sequence[Path], suite_path: Path, folders: DataFolders) -> list[Path]:
    """Validate each batch file; accept the good ones, quarantine the bad ones, then raise.

    Each file is read (Parquet or CSV) and validated on its own. A passing file moves to
    ``folders.accepted``; a failing or unreadable one moves to ``folders.quarantine`` with its
    reports. Passing batches are accepted even when another batch fails.

    Returns:
        The accepted paths, in input order (only when every batch passed).

    Raises:
        DataValidationError: at least one batch failed; raised after every batch was handled.
        SuiteError: the suite is unusable (nothing is moved).
        DataError: a passing batch clashes with a different accepted file of the same name.
    """
    suite_name = load_suite(suite_path)["name"]
    accepted: list[Path] = []
    failures: list[tuple[ValidationReport, Path]] = []
    for path in batches:
        try:
            report = validate_batch(read_batch(path), suite_path, path.name)
        except DataError as error:
            report = ValidationReport.unreadable(path.name, suite_name, error)
        if report.success:
            accepted.append(accept_batch(path, folders))
            logger.info("accepted %s: %s", path.name, report.describe())
        else:
            failures.append((report, quarantine(path, report, folders.quarantine)))
            logger.warning("quarantined %s: %s", path.name, report.describe(limit=MESSAGE_FAILURES_PER_BATCH))
    raise_for_failures(failures)
    return accepted


# --- GX plumbing ---------------------------------------------------------------------------


def _ephemeral_context():
    """An in-memory GX context without progress bars or a temporary Data Docs site."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def _failed_expectation(evr: dict[str, Any]) -> FailedExpectation:
    config = evr.get("expectation_config") or {}
    kwargs = config.get("kwargs") or {}
    try:
        summary = _summarize(config.get("type", ""), kwargs, evr.get("result") or {}, evr.get("exception_info") or {})
    except Exception as error:  # a summary is a convenience: never let it hide the failure
        summary = f"failed (no summary: {type(error).__name__}; see the report)"
    column = kwargs.get("column")
    return FailedExpectation(
        type=config.get("type", "unknown"), column=str(column) if column is not None else None, summary=summary, notes=config.get("notes")
    )


def _summarize(type_: str, kwargs: dict[str, Any], result: dict[str, Any], exception_info: dict[str, Any]) -> str:
    error = _exception_message(exception_info)
    if error:
        return f"{COULD_NOT}: {error}"
    observed = result.get("observed_value")
    if "unexpected_count" in result:
        if type_ == "expect_column_values_to_not_be_null":
            what = "are null"
        elif "min_value" in kwargs or "max_value" in kwargs:
            what = "outside " + _bounds(kwargs.get("min_value"), kwargs.get("max_value"))
        elif "value_set" in kwargs:
            what = "not in " + _compact_list(kwargs["value_set"])
        else:
            what = "unexpected"
        text = f"{result['unexpected_count']} of {result.get('element_count', '?')} values {what}"
        examples = [v for v in dict.fromkeys(map(_fmt, result.get("partial_unexpected_list") or [])) if v != "None"][:3]
        return text + (f" (e.g. {', '.join(examples)})" if examples else "")
    if type_ in ("expect_table_columns_to_match_set", "expect_table_columns_to_match_ordered_list"):
        mismatched = (result.get("details") or {}).get("mismatched") or {}
        if isinstance(mismatched, dict) and mismatched:
            parts = [f"{key} {', '.join(map(str, cols))}" for key, cols in sorted(mismatched.items(), key=lambda kv: kv[0] != "missing")]
            return "; ".join(parts)
        return f"columns are {_compact_list(observed or [])}"
    if type_ == "expect_column_kl_divergence_to_be_less_than":
        return _kl_summary(kwargs, result)
    if type_ in ("expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type"):
        expected = kwargs.get("type_list") or [kwargs.get("type_")]
        return f"dtype {observed}, expected one of {', '.join(map(str, expected))}"
    if "min_value" in kwargs or "max_value" in kwargs:
        bounds = _bounds(kwargs.get("min_value"), kwargs.get("max_value"), words=True)
        noun = " rows" if type_.startswith("expect_table_row_count") else ""
        return f"observed {_fmt(observed)}{noun}, expected {bounds}"
    if observed is not None:
        return f"observed {_fmt(observed)}"
    return "failed"


def _kl_summary(kwargs: dict[str, Any], result: dict[str, Any]) -> str:
    details = result.get("details") or {}
    observed = (details.get("observed_partition") or {})
    values, weights = observed.get("values") or [], observed.get("weights") or []
    expected_values = set(map(_fmt, (kwargs.get("partition_object") or {}).get("values") or []))
    shares = dict(zip(map(_fmt, values), weights))
    divergence = result.get("observed_value")
    outside = [v for v, w in shares.items() if v not in expected_values and w]
    if divergence is None:
        if outside:
            return f"values outside the expected partition ({', '.join(outside)}): divergence is infinite"
        return "divergence undefined (no non-null values)"
    top_value, top_share = max(shares.items(), key=lambda kv: kv[1]) if shares else ("?", 0.0)
    absent = [v for v, w in shares.items() if not w]
    text = f"KL divergence {divergence:.3f} > {_fmt(kwargs.get('threshold'))}; largest share {top_value} at {top_share:.0%}"
    return text + (f"; absent: {', '.join(absent)}" if absent else "")


def _exception_message(exception_info: dict[str, Any]) -> str | None:
    # GX 1.x gives either {"raised_exception", "exception_message", ...} or one such dict per metric.
    candidates = [exception_info, *(v for v in exception_info.values() if isinstance(v, dict))]
    for info in candidates:
        if info.get("raised_exception") and info.get("exception_message"):
            return str(info["exception_message"])
    return None


def _bounds(low: Any, high: Any, words: bool = False) -> str:
    if words:
        if low is not None and high is not None:
            return f"between {_fmt(low)} and {_fmt(high)}"
        return f"at least {_fmt(low)}" if low is not None else f"at most {_fmt(high)}"
    return f"[{_fmt(low) if low is not None else '-inf'}, {_fmt(high) if high is not None else 'inf'}]"


def _compact_list(values: Sequence[Any], limit: int = 12) -> str:
    shown = ", ".join(_fmt(v) for v in list(values)[:limit])
    return "{" + shown + (", ..." if len(values) > limit else "") + "}"


def _fmt(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _plain_page(report: ValidationReport, reason: str | None) -> str:
    items = "".join(f"<li>{html.escape(f.describe())}</li>" for f in report.failed)
    extra = f"<p>{html.escape(reason)}</p>" if reason else ""
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(report.batch_name)}: validation</title></head><body>"
        f"<h1>Batch {html.escape(report.batch_name)}</h1>"
        f"<p>Suite {html.escape(report.suite_name)}: the batch {html.escape(report.headline())}.</p>"
        f"<ul>{items}</ul>{extra}<p>The full result is in {html.escape(report.batch_name)}.validation.json.</p>"
        "</body></html>\n"
    )


def _free_quarantine_name(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists() or any(p.exists() for p in report_paths(candidate)):
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
        n += 1
    return candidate


validate_batch_task = step(validate_batch, name="validate-batch")
quarantine_task = step(quarantine, name="quarantine-batch")
screen_batches_task = step(screen_batches, name="screen-batches")
