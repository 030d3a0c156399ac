"""The night's report: a markdown comparison table, the decision and charts, kept as a Prefect artifact.

The charts (``tasks.charts``: per-class recall against production, the candidate's confusion
matrix, production's accuracy over time) are SVG images inside the markdown, as ``data:`` URLs:
the Prefect UI shows them with the table, with no image server.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from registry.browse import ProductionChange
from tasks.charts import AccuracyPoint, accuracy_over_time_chart, confusion_matrix_chart, recall_chart, svg_data_url
from tasks.comparison import Metrics, compare
from tasks.decide import Decision
from tasks.retry_policy import retry_if_transient
from tasks.steps import step


class NightReport(BaseModel):
    """What one nightly run did. ``outcome`` is ``no_new_data`` or the decision's outcome.

    ``version_url`` is the candidate's page on the release dashboard (None unless
    ``ui.base_url`` is set); ``production_history`` the model's production changes, oldest
    first, as they stand after the night's decision (``RegistryStore.production_history``).
    """

    model: str
    outcome: str
    summary: str
    version: int | None = None
    baseline_version: int | None = None
    candidate: Metrics | None = None
    baseline: Metrics | None = None
    decision: Decision | None = None
    batches: list[str] = []
    version_url: str | None = None
    production_history: list[ProductionChange] = []


def comparison_markdown(report: NightReport) -> str:
    """Markdown: candidate against baseline (accuracy, loss, macro F1, worst recall change), then the decision."""
    lines = [f"# {report.model}: nightly retrain", "", report.summary, ""]
    if report.candidate is not None:
        comparison = compare(report.candidate, report.baseline)
        against = f"v{report.baseline_version}" if comparison.has_baseline else "(none)"
        lines += [f"| metric | candidate v{report.version} | production {against} | change |", "|---|---|---|---|"]
        for row in comparison.summary:
            old = "" if row.baseline is None else f"{row.baseline:.4f}"
            change = "" if row.change is None else f"{row.change:+.4f}"
            lines.append(f"| {row.key} | {row.candidate:.4f} | {old} | {change} |")
        worst = comparison.worst_recall
        if worst is not None:
            lines.append(f"| worst per-class recall change | class {worst.class_index} | | {worst.change:+.4f} |")
        lines.append("")
    if report.decision is not None:
        lines += [f"**Decision: {report.decision.outcome.value}**", ""]
        lines += [f"- {reason}" for reason in report.decision.reasons]
    if report.batches:
        lines += ["", f"Trained on {len(report.batches)} batch(es): {', '.join(report.batches)}"]
    if report.version_url:
        lines += ["", f"[v{report.version} on the release dashboard]({report.version_url})"]
    return "\n".join(lines) + "\n"


def charts_markdown(report: NightReport, now: datetime) -> str:
    """Markdown images (SVG ``data:`` URLs) of the candidate's per-class recall beside production's,
    its confusion matrix (when recorded) and production's accuracy over time until ``now``; empty
    for a night without a candidate."""
    if report.candidate is None:
        return ""
    against = f"production v{report.baseline_version}" if report.baseline_version is not None else "production"
    baseline = report.baseline.per_class_recall if report.baseline is not None else None
    images = [
        (
            f"Per-class recall of v{report.version} against {against}",
            recall_chart(report.candidate.per_class_recall, baseline, candidate_label=f"v{report.version}", baseline_label=against),
        )
    ]
    if report.candidate.confusion_matrix:
        title = f"Confusion matrix of v{report.version}"
        images.append((title, confusion_matrix_chart(report.candidate.confusion_matrix, title=title)))
    points = [AccuracyPoint(change.at, change.version, change.accuracy) for change in report.production_history]
    images.append(("Accuracy of production over time", accuracy_over_time_chart(points, until=now)))
    lines = ["## Charts", ""]
    for title, svg in images:
        lines += [f"![{title}]({svg_data_url(svg)})", ""]
    return "\n".join(lines)


def publish_report(report: NightReport) -> None:
    """Attach the report to the current flow run as a markdown artifact keyed ``<model>-nightly``:
    the comparison table and decision, then the charts (:func:`charts_markdown`)."""
    create_markdown_artifact(
        markdown=comparison_markdown(report) + "\n" + charts_markdown(report, datetime.now(UTC)),
        key=re.sub(r"[^a-z0-9-]", "-", report.model.lower()) + "-nightly",
        description=f"{report.model}: {report.outcome}",
    )


publish_report_task = step(
    publish_report, name="publish-report", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_if_transient
)
