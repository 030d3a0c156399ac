"""The report of one batch's validation, and its human-readable forms.

``ValidationReport`` carries GX's result (JSON-able) with each failed expectation summed up in
words (``43 of 300 values outside [0, 16] (e.g. 17)``); ``render_data_docs`` turns it into the
Data Docs page kept beside a quarantined batch.

``great_expectations`` takes 5-9 s to import: only ``render_data_docs`` imports it, inside;
the nightly calls it in the GX worker process (``tasks.gx_worker``), which has GX imported.
"""

from __future__ import annotations

import html
import logging
import math
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

logger = logging.getLogger(__name__)

COULD_NOT = "could not be evaluated"


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


# --- summaries of GX results -------------------------------------------------------------


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
