"""The commands that read and tidy the registry: versions, show, history, doctor, gc and db upgrade.

They import neither TensorFlow nor Prefect (tests/cli checks it): the registry and the tasks
they need are imported inside each command. ``tfrelease.cli`` registers them on its app.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from tfrelease.console import (
    ModelOption,
    actor,
    console,
    errors,
    load_settings,
    model_name,
    open_store,
)


def versions(model: ModelOption = None) -> None:
    """List model versions with status and key metrics."""
    settings = load_settings()
    store = open_store(settings)
    rows = store.list_versions(model)
    from registry.lifecycle import PRODUCTION

    production = {m: store.get_alias(m, PRODUCTION) for m in {r.model_name for r in rows}}
    table = Table()
    for column in ("model", "version", "status", "accuracy", "macro F1", "loss", "baseline", "created (UTC)", "batches"):
        table.add_column(column, no_wrap=True, justify="left" if column in {"model", "status", "created (UTC)"} else "right")
    for row in rows:
        metrics = row.metrics or {}
        is_production = production.get(row.model_name) is not None and production[row.model_name].version == row.version
        table.add_row(
            row.model_name,
            str(row.version),
            Text(row.status.value, style="bold green") if is_production else row.status.value,
            _fraction(metrics.get("accuracy")),
            _fraction(metrics.get("macro_f1")),
            _fraction(metrics.get("loss")),
            "" if row.baseline_version is None else str(row.baseline_version),
            row.created_at.strftime("%Y-%m-%d %H:%M"),
            str(len(row.batches or [])),
        )
    if not rows:
        console.print("no model versions yet: run `tfrelease retrain`")
        return
    console.print(table)


def show(version: int, model: ModelOption = None) -> None:
    """Print one model version in full: metrics beside its baseline's, data, lineage, decision."""
    settings = load_settings()
    name = model_name(settings, model)
    from registry.errors import RegistryError

    try:
        row = open_store(settings).get_version(name, version)
    except RegistryError as error:
        errors.print(f"{error}", style="red", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"{row.model_name} version {row.version}: {row.status.value}", style="bold", highlight=False)
    from tasks.comparison import compare

    comparison = compare(row.metrics, row.baseline_metrics)
    table = Table("metric", f"v{row.version}", f"baseline v{row.baseline_version}" if row.baseline_version else "baseline (none)", "change")
    for figure in [*comparison.summary, *comparison.per_class_recall]:
        change = "" if figure.change is None else f"{figure.change:+.4f}"
        table.add_row(figure.key, _fraction(figure.candidate), _fraction(figure.baseline), change)
    console.print(table)
    details = {
        "created (UTC)": row.created_at.isoformat(timespec="seconds"),
        "path": row.path,
        "saved_model.pb sha256": row.saved_model_sha256,
        "data fingerprint": row.data_fingerprint,
        "batches": ", ".join(row.batches or []),
        "hyperparameters": row.hyperparameters,
        "decision": (row.decision or {}).get("outcome"),
        "reasons": "; ".join((row.decision or {}).get("reasons", [])),
        "git commit": row.git_commit,
        "python / tensorflow / keras": f"{row.python_version} / {row.tensorflow_version} / {row.keras_version}",
        "flow run": row.flow_run_id,
    }
    for key, value in details.items():
        console.print(f"  {key}: {'' if value is None else value}", highlight=False)


def history(model: ModelOption = None, limit: Annotated[int, typer.Option(help="Newest N events.")] = 50) -> None:
    """Print the audit log: who changed what, when, why, and in which flow run."""
    settings = load_settings()
    events = open_store(settings).list_events(model, limit=limit)
    if not events:
        console.print("no events yet")
        return
    table = Table("time (UTC)", "model", "version", "action", "from → to", "actor", "reason", "flow run")
    for e in events:
        moved = "" if e.from_version is None and e.to_version is None else f"{e.from_version or '-'} → {e.to_version or '-'}"
        table.add_row(
            e.created_at.strftime("%Y-%m-%d %H:%M:%S"), e.model_name, str(e.version), e.action.value, moved,
            e.actor, e.reason, (e.flow_run_id or "")[:8],
        )
    console.print(table)


def doctor(fix: Annotated[bool, typer.Option("--fix", help="Repair what is safe to repair.")] = False) -> None:
    """Compare the registry, the model store and models.config; report (and --fix) each drift.

    Exits 1 while drift that needs a human remains.
    """
    settings = load_settings()
    from tasks.doctor import find_drift, repair

    store = open_store(settings)
    drifts = find_drift(store, settings.model_store, settings.serving_config_path, data_dir=settings.data_dir)
    if not drifts:
        console.print("no drift: registry, model store and models.config agree")
        return
    for drift in drifts:
        console.print(str(drift), style="yellow" if drift.safe else "red", highlight=False)
    if not fix:
        console.print("run `tfrelease doctor --fix` to apply the safe repairs")
        raise typer.Exit(1)
    for line in repair(drifts, store, settings.model_store, settings.serving_config_path, actor=actor()):
        console.print(f"fixed: {line}", highlight=False)
    remaining = find_drift(store, settings.model_store, settings.serving_config_path, data_dir=settings.data_dir)
    for drift in remaining:
        console.print(f"left for a human: {drift}", style="red", highlight=False)
    if remaining:
        raise typer.Exit(1)


def gc(
    model: ModelOption = None,
    keep: Annotated[Optional[int], typer.Option(help="Newest unprotected versions to keep (default: the model's retention.keep).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan, delete nothing.")] = False,
) -> None:
    """Delete the files of old versions; never production, previous, pending or approved ones."""
    settings = load_settings()
    name = model_name(settings, model)
    from tasks.retention import apply_gc, plan_gc

    store = open_store(settings)
    try:
        plan = plan_gc(store, name, settings.model(name).keep_versions if keep is None else keep)
    except ValueError as error:
        errors.print(f"{error}", style="red", highlight=False)
        raise typer.Exit(2) from None
    console.print(plan.describe(), highlight=False)
    if dry_run or not plan.delete:
        return
    deleted = apply_gc(plan, store, settings.model_store, actor=actor())
    console.print(f"deleted the files of version(s) {', '.join(map(str, deleted)) or 'none'}")


def db_upgrade() -> None:
    """Apply the registry's schema migrations (also done automatically at start)."""
    settings = load_settings()
    open_store(settings)
    console.print(f"registry schema is up to date ({settings.registry_url.split('://')[0]})")


def _fraction(value: float | None) -> str:
    """A metric as the tables print it: four decimals, or an empty cell when there is none."""
    return "" if value is None else f"{value:.4f}"
