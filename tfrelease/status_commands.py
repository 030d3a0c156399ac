"""The commands that show where things stand: ``status`` (one screen per model) and ``compare``
(two versions side by side).

They read the registry, the settings and the disk only: no Prefect server is needed, and
neither TensorFlow, Great Expectations nor Prefect is imported (tests/cli checks it). Their
reads stay fast on a registry of 10,000s of versions (the bounded reads of ``registry.browse``;
benchmarks/cli_listing.py measures it). ``tfrelease.cli`` registers them on its app.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.rule import Rule
from rich.table import Table

from tfrelease import json_output
from tfrelease.console import ModelOption, console, load_settings, model_name, open_store, version_or_exit
from tfrelease.json_output import JsonOption
from tfrelease.registry_commands import aliases_by_version

if TYPE_CHECKING:
    from core.settings import Settings
    from deployments.nightly_times import NightlyTimes
    from registry.browse import ModelOverview
    from registry.models import CanaryRecord, ModelVersionRecord
    from registry.store import RegistryStore
    from tasks.drift import Drift


def status(model: ModelOption = None, as_json: JsonOption = False) -> None:
    """Where each model stands: production, approvals, last and next retrain, drift.

    Production since when and by whom, the rollback target, a running canary, what awaits
    approval, the last retrain and its decision, the next nightly, and the drift the doctor
    finds. Reads the registry and the disk only: no Prefect server needed.
    """
    settings = load_settings()
    chosen = model_name(settings, model) if model else None
    store = open_store(settings)
    from deployments.nightly_times import nightly_times
    from tasks.doctor import find_drift

    # Each configured model (a fresh one has no versions yet) and each model in the registry.
    names = [chosen] if chosen else sorted(set(settings.models) | set(store.list_models()))
    now = datetime.now(UTC)
    overviews = [overview for overview in store.model_overviews(names) if overview.name in names]
    models = [_read_status(store, overview, overview.name in settings.models) for overview in overviews]
    try:
        times: NightlyTimes | None = nightly_times(settings.schedule, now)
        schedule_error = None
    except ValueError as error:
        times, schedule_error = None, str(error)
    try:
        drifts: list[Drift] = find_drift(
            store, settings.model_store, settings.serving_config_path, now=now, probe_retrain=True,
            grpc_address=settings.serving.grpc_address, base_paths=settings.serving.base_paths,
        )
        drift_error = None
    except OSError as error:  # the model store cannot be listed or read: say so, show the rest
        drifts, drift_error = [], f"the doctor could not look: {error}"

    if as_json:
        json_output.emit(
            {
                "generated_at": json_output.timestamp(now),
                "schedule": {
                    "cron": settings.schedule.cron,
                    "timezone": settings.schedule.timezone,
                    "last_due_at": json_output.timestamp(times.previous) if times else None,
                    "next_due_at": json_output.timestamp(times.next) if times else None,
                    "error": schedule_error,
                },
                "models": [_model_document(m, drifts) for m in models],
                "other_drift": [json_output.drift(d) for d in drifts if d.model not in names],
                "drift_error": drift_error,
            }
        )
        return

    if all(m.overview.version_count == 0 for m in models):
        console.print("no model versions yet: run `tfrelease retrain` now, or `tfrelease serve` for the nightly")
    for m in models:
        console.print(Rule(m.overview.name if m.configured else f"{m.overview.name} (not configured)", align="left"))
        console.print(_model_screen(m, times, schedule_error, settings, drifts, drift_error))
    other = [d for d in drifts if d.model not in names]
    if other:
        console.print(Rule("other drift", align="left"))
        for found in other:
            console.print(str(found), style="yellow" if found.safe else "red", highlight=False)


def compare(a: int, b: int, model: ModelOption = None, as_json: JsonOption = False) -> None:
    """Two versions side by side: metrics, per-class figures, data and baselines.

    Accuracy, loss, macro F1 and per-class recall (and precision, if recorded) with the change
    from A to B, their statuses, baselines and data (fingerprints, batches only in one).
    """
    settings = load_settings()
    name = model_name(settings, model)
    store = open_store(settings)
    first, second = version_or_exit(store, name, a), version_or_exit(store, name, b)
    from tasks.comparison import compare as compare_metrics

    aliases = aliases_by_version(store, name)
    figures = compare_metrics(second.metrics, first.metrics)  # candidate B against baseline A: change = B - A
    per_class = _per_class(first.metrics or {}, second.metrics or {})
    batches_a, batches_b = first.batches or [], second.batches or []
    only_a, only_b = [x for x in batches_a if x not in set(batches_b)], [x for x in batches_b if x not in set(batches_a)]
    fingerprints = (first.data_fingerprint, second.data_fingerprint)
    same_data = fingerprints[0] == fingerprints[1] if all(fingerprints) else None

    if as_json:
        json_output.emit(
            {
                "model": name,
                "a": json_output.version_summary(first, aliases.get(a, [])),
                "b": json_output.version_summary(second, aliases.get(b, [])),
                "metrics": [
                    {"key": f.key, "a": f.baseline, "b": f.candidate, "change": f.change, "lower_is_better": f.lower_is_better}
                    for f in figures.summary
                ],
                "per_class": per_class,
                "data": {
                    "same_fingerprint": same_data,
                    "fingerprint_a": fingerprints[0],
                    "fingerprint_b": fingerprints[1],
                    "batches_only_in_a": only_a,
                    "batches_only_in_b": only_b,
                },
            }
        )
        return

    def role(record: ModelVersionRecord) -> str:
        names = aliases.get(record.version, [])
        return record.status.value + (f" ({', '.join(names)})" if names else "")

    table = Table("", f"v{a}", f"v{b}", f"change (v{b} - v{a})")
    table.add_row("status", role(first), role(second), "")
    for figure in figures.summary:
        table.add_row(figure.label, _fraction(figure.baseline), _fraction(figure.candidate), _signed(figure.change))
    for row in per_class:
        for kind in ("recall", "precision"):
            if row[f"{kind}_a"] is not None or row[f"{kind}_b"] is not None:
                table.add_row(
                    f"{kind} {row['class']}", _fraction(row[f"{kind}_a"]), _fraction(row[f"{kind}_b"]), _signed(row[f"{kind}_change"])
                )
    table.add_row("baseline", _version(first.baseline_version), _version(second.baseline_version), "")
    table.add_row("created (UTC)", f"{first.created_at:%Y-%m-%d %H:%M}", f"{second.created_at:%Y-%m-%d %H:%M}", "")
    table.add_row("batches", str(len(batches_a)), str(len(batches_b)), "")
    table.add_row(
        "data fingerprint", (fingerprints[0] or "")[:12], (fingerprints[1] or "")[:12],
        "" if same_data is None else ("same data" if same_data else "different data"),
    )
    console.print(f"{name}: v{a} against v{b}", style="bold", highlight=False)
    console.print(table)
    if only_a:
        console.print(f"batches only in v{a}: {', '.join(only_a)}", highlight=False)
    if only_b:
        console.print(f"batches only in v{b}: {', '.join(only_b)}", highlight=False)


# -- status, one model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Since:
    """A version and the change that gave it its role, from the audit log (when the log has no
    such event, only ``at`` is known: the version's last update)."""

    record: ModelVersionRecord
    at: datetime
    actor: str | None = None
    reason: str | None = None
    flow_run_id: str | None = None


@dataclass(frozen=True)
class _ModelStatus:
    """What ``status`` shows of one model."""

    overview: ModelOverview
    configured: bool
    production: _Since | None
    pending: list[_Since]  # newest first, at most registry.browse.PENDING_SHOWN
    canary: CanaryRecord | None


def _read_status(store: RegistryStore, overview: ModelOverview, configured: bool) -> _ModelStatus:
    """``overview`` with who made production production and asked for each approval, and the
    running canary: a few indexed reads, whatever the number of versions."""
    production = None
    if overview.production is not None:
        newest = store.production_timeline(overview.name, limit=1).rows
        change = newest[0] if newest and newest[0].version == overview.production.version else None
        production = (
            _Since(overview.production, change.at, change.actor, change.reason, change.flow_run_id)
            if change
            else _Since(overview.production, overview.production.updated_at)
        )
    asked = store.decisions(overview.name, [record.version for record in overview.pending])
    pending = [
        _Since(record, event.created_at, event.actor, event.reason, event.flow_run_id)
        if (event := asked.get(record.version))
        else _Since(record, record.updated_at)
        for record in overview.pending
    ]
    canary = store.get_canary(overview.name) if overview.canary is not None else None
    return _ModelStatus(overview, configured, production, pending, canary)


def _since(found: _Since) -> dict[str, Any]:
    return json_output.version_since(found.record, found.at, found.actor, found.reason, found.flow_run_id)


def _model_document(status: _ModelStatus, drifts: list[Drift]) -> dict[str, Any]:
    overview = status.overview
    return {
        "model": overview.name,
        "configured": status.configured,
        "total_versions": overview.version_count,
        "production": _since(status.production) if status.production else None,
        "previous_version": overview.previous.version if overview.previous else None,
        "canary": json_output.canary(status.canary) if status.canary else None,
        "awaiting_approval": [_since(found) for found in status.pending],
        "awaiting_approval_count": overview.pending_count,
        "last_retrain": json_output.last_retrain(overview.latest) if overview.latest else None,
        "drift": [json_output.drift(d) for d in drifts if d.model == overview.name],
    }


def _model_screen(
    status: _ModelStatus,
    times: NightlyTimes | None,
    schedule_error: str | None,
    settings: Settings,
    drifts: list[Drift],
    drift_error: str | None,
) -> Table:
    """One model's screen: a two-column grid, one line per question."""
    overview = status.overview
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()

    grid.add_row("production", _since_line(status.production) if status.production else "none")
    grid.add_row("rollback to", f"v{overview.previous.version}" if overview.previous else "none (no previous version)")
    if status.canary is not None:
        c = status.canary
        grid.add_row("canary", f"v{c.version} since {_when(c.started_at)} by {c.actor}, soaks until {_when(c.soak_until)}")
    for i, found in enumerate(status.pending):
        grid.add_row("awaiting" if i == 0 else "", f"{_since_line(found)}: `tfrelease approve {found.record.version}`")
    if not status.pending:
        grid.add_row("awaiting", "nothing awaits approval")
    elif overview.pending_count > len(status.pending):
        grid.add_row("", f"and {overview.pending_count - len(status.pending)} older ones")

    newest = overview.latest
    if newest is None:
        grid.add_row("last retrain", "none yet: run `tfrelease retrain`")
    else:
        decision = newest.decision or {}
        outcome = f", decision {decision['outcome']}" if decision.get("outcome") else ""
        reasons = f": {'; '.join(decision.get('reasons') or [])}" if decision.get("reasons") else ""
        run = f" (flow run {newest.flow_run_id[:8]})" if newest.flow_run_id else ""
        grid.add_row("last retrain", f"v{newest.version} at {_when(newest.created_at)}{run}: {newest.status.value}{outcome}{reasons}")
    if not status.configured:
        grid.add_row("next nightly", "none: the model is not in the configuration")
    elif times is None:
        grid.add_row("next nightly", f"unknown: {schedule_error}")
    else:
        schedule = settings.schedule
        local = "" if schedule.timezone == "UTC" else f", {times.next:%H:%M} {schedule.timezone}"
        grid.add_row("next nightly", f"{_when(times.next)}{local} (cron '{schedule.cron}' in {schedule.timezone})")
        if newest is not None and newest.created_at < times.previous:
            grid.add_row(
                "",
                f"no version since the nightly due {_when(times.previous)}: it found no new data, refused a batch, "
                "failed before registering, or did not run (Prefect's UI has every run)",
            )
    grid.add_row("versions", f"{overview.version_count:,}")

    mine = [d for d in drifts if d.model == overview.name]
    if drift_error:
        grid.add_row("drift", drift_error)
    elif not mine:
        grid.add_row("drift", "none: registry, model store and models.config agree")
    else:
        safe = sum(d.safe for d in mine)
        grid.add_row("drift", f"{len(mine)} found, {safe} safe to repair with `tfrelease doctor --fix`:")
        for found in mine:
            grid.add_row("", str(found))
    return grid


def _since_line(found: _Since) -> str:
    record, metrics = found.record, found.record.metrics or {}
    who = f" by {found.actor}" if found.actor else ""
    why = f" ({found.reason})" if found.reason else ""
    accuracy = f", accuracy {metrics['accuracy']:.4f}" if metrics.get("accuracy") is not None else ""
    return f"v{record.version} since {_when(found.at)}{who}{why}{accuracy}"


# -- compare ------------------------------------------------------------------------------------


def _per_class(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Per class k: recall and precision of A and B (None where not recorded) and B - A."""
    recall_a, recall_b = a.get("per_class_recall") or [], b.get("per_class_recall") or []
    precision_a, precision_b = a.get("per_class_precision") or [], b.get("per_class_precision") or []
    classes = max(len(recall_a), len(recall_b), len(precision_a), len(precision_b))

    def at(values: list[float], k: int) -> float | None:
        return values[k] if k < len(values) else None

    rows = []
    for k in range(classes):
        row: dict[str, Any] = {"class": k}
        for kind, left, right in (("recall", recall_a, recall_b), ("precision", precision_a, precision_b)):
            x, y = at(left, k), at(right, k)
            row |= {f"{kind}_a": x, f"{kind}_b": y, f"{kind}_change": None if x is None or y is None else y - x}
        rows.append(row)
    return rows


# -- formatting ---------------------------------------------------------------------------------


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _version(number: int | None) -> str:
    return "" if number is None else f"v{number}"


def _fraction(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _signed(value: float | None) -> str:
    return "" if value is None else f"{value:+.4f}"

