"""The watch's verdict, kept with its flow run as a Prefect table artifact."""

from __future__ import annotations

from prefect.artifacts import create_table_artifact

from tasks.steps import step
from tasks.watch import WatchOutcome


def publish_verdict(outcome: WatchOutcome) -> None:
    """Keep ``outcome`` as the table artifact ``watch-<model>`` (its description says what was
    watched, the verdict and the action), so the Prefect UI shows every minute's verdict."""
    description = f"{outcome.watched}: {outcome.detail}"
    if outcome.action != "nothing":
        description += f" -> {outcome.action.replace('_', ' ')}"
    create_table_artifact(
        table=outcome.rows() or [{"figure": "-", "measured": "-", "threshold": "-", "window": "-", "verdict": outcome.detail}],
        key=f"watch-{outcome.model.lower().replace('_', '-')}",
        description=description,
    )


publish_verdict_task = step(publish_verdict, name="publish-verdict")
