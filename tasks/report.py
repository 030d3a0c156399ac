"""The night's report: a markdown comparison table and decision, kept as a Prefect artifact."""

from __future__ import annotations

import re

from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from tasks.decide import Decision
from tasks.evaluate import Metrics
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
        base = report.baseline
        lines += [
            f"| metric | candidate v{report.version} | production {f'v{report.baseline_version}' if base else '(none)'} | change |",
            "|---|---|---|---|",
        ]
        for name in ("accuracy", "loss", "macro_f1"):
            new = getattr(report.candidate, name)
            old = getattr(base, name) if base else None
            change = f"{new - old:+.4f}" if old is not None else ""
            lines.append(f"| {name} | {new:.4f} | {'' if old is None else f'{old:.4f}'} | {change} |")
        if base is not None:
            drops = [o - n for n, o in zip(report.candidate.per_class_recall, base.per_class_recall)]
            worst = max(range(len(drops)), key=drops.__getitem__)
            lines.append(f"| worst per-class recall change | class {worst} | | {-drops[worst]:+.4f} |")
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
