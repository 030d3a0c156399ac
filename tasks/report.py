"""The night's report: a markdown comparison table and decision, kept as a Prefect artifact."""

from __future__ import annotations

import re

from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from tasks.comparison import Metrics, compare
from tasks.decide import Decision
from tasks.retry_policy import retry_if_transient
from tasks.steps import step


class NightReport(BaseModel):
    """What one nightly run did. ``outcome`` is ``no_new_data`` or the decision's outcome."""

    model: str
    outcome: str
    summary: str
    version: int | None = None
    baseline_version: int | None = None
    candidate: Metrics | None = None
    baseline: Metrics | None = None
    decision: Decision | None = None
    batches: list[str] = []


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
    return "\n".join(lines) + "\n"


def publish_report(report: NightReport) -> None:
    """Attach the report to the current flow run as a markdown artifact keyed ``<model>-nightly``."""
    create_markdown_artifact(
        markdown=comparison_markdown(report),
        key=re.sub(r"[^a-z0-9-]", "-", report.model.lower()) + "-nightly",
        description=f"{report.model}: {report.outcome}",
    )


publish_report_task = step(
    publish_report, name="publish-report", retries=2, retry_delay_seconds=[2, 10], retry_condition_fn=retry_if_transient
)
