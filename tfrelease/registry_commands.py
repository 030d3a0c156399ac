"""The commands that read and tidy the registry: versions, show, history, doctor, gc and db upgrade.

They import neither TensorFlow nor Prefect (tests/cli checks it): the registry and the tasks
they need are imported inside each command. ``tfrelease.cli`` registers them on its app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from tfrelease import json_output
from tfrelease.console import (
    ModelOption,
    actor,
    console,
    errors,
    load_settings,
    model_name,
    open_store,
)
from tfrelease.json_output import JsonOption

if TYPE_CHECKING:
    from registry.store import RegistryStore


def versions(
    model: ModelOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest N versions of each model.")] = 20,
    before: Annotated[
        Optional[int], typer.Option(help="Only versions numbered below N: the next page starts where the last ended.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List model versions, newest first, with status and headline metrics (--limit per model, --before N pages back)."""
    settings = load_settings()
    store = open_store(settings)
    # One bounded page per model (keyset on the version number), never the whole table.
    names = [model] if model else sorted(set(settings.models) | set(store.list_models()))
    pages = {name: store.versions_page(name, before=before, limit=limit) for name in names}
    aliases = {name: aliases_by_version(store, name) for name, page in pages.items() if page.rows}
    if as_json:
        json_output.emit(
            {
                "models": [
                    {
                        "model": name,
                        "versions": [json_output.version_line(v, aliases[name].get(v.version, [])) for v in page.rows],
                        "next_before": page.older,
                    }
                    for name, page in pages.items()
                ]
            }
        )
        return
    if not any(page.rows for page in pages.values()):
        console.print("no model versions yet: run `tfrelease retrain`" if before is None else f"no versions numbered below {before}")
        return
    table = Table()
    for column in ("model", "version", "status", "accuracy", "macro F1", "baseline", "created (UTC)", "flow run"):
        table.add_column(column, no_wrap=True, justify="right" if column in {"version", "accuracy", "macro F1", "baseline"} else "left")
    for name, page in pages.items():
        for line in page.rows:
            pointing = aliases[name].get(line.version, [])
            status = line.status.value + "".join(f" ({alias})" for alias in pointing if alias != line.status.value)
            table.add_row(
                line.model_name,
                str(line.version),
                Text(status, style="bold green") if "production" in pointing else status,
                _fraction(line.accuracy),
                _fraction(line.macro_f1),
                "" if line.baseline_version is None else str(line.baseline_version),
                line.created_at.strftime("%Y-%m-%d %H:%M"),
                (line.flow_run_id or "")[:8],
            )
    console.print(table)
    for name, page in pages.items():
        if page.older is not None:
            console.print(f"older versions of {name}: tfrelease versions --model {name} --before {page.older}", highlight=False)


def aliases_by_version(store: RegistryStore, model: str) -> dict[int, list[str]]:
    """Version number -> the names of ``model``'s aliases pointing at it (``production``,
    ``previous``, ``canary``); versions without one are left out. Three primary-key reads."""
    from registry.lifecycle import CANARY, PREVIOUS, PRODUCTION

    found: dict[int, list[str]] = {}
    for alias in (PRODUCTION, PREVIOUS, CANARY):
        record = store.get_alias(model, alias)
        if record is not None:
            found.setdefault(record.version, []).append(alias)
    return found


def show(version: int, model: ModelOption = None, as_json: JsonOption = False) -> None:
    """Print one model version in full: metrics beside its baseline's, data, lineage, decision."""
    settings = load_settings()
    name = model_name(settings, model)
    from registry.errors import RegistryError

    store = open_store(settings)
    try:
        row = store.get_version(name, version)
    except RegistryError as error:
        errors.print(f"{error}", style="red", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        json_output.emit(json_output.version_detail(row, aliases_by_version(store, name).get(row.version, [])))
        return
    console.print(f"{row.model_name} version {row.version}: {row.status.value}", style="bold", highlight=False)
    from tasks.comparison import PairedComparison, compare

    comparison = compare(row.metrics, row.baseline_metrics)
    recorded = (row.decision or {}).get("paired")  # the decision's tests: changes with their interval
    paired = PairedComparison.model_validate(recorded) if recorded else None
    table = Table("metric", f"v{row.version}", f"baseline v{row.baseline_version}" if row.baseline_version else "baseline (none)", "change")
    for figure in [*comparison.summary, *comparison.per_class_recall]:
        test = paired.test_of(figure) if paired is not None else None
        change = test.describe() if test is not None else "" if figure.change is None else f"{figure.change:+.4f}"
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
    page = settings.ui.version_url(row.model_name, row.version)
    if page is not None:  # ui.base_url is set: the version's page on the release dashboard
        details["dashboard"] = page
    for key, value in details.items():
        console.print(f"  {key}: {'' if value is None else value}", highlight=False)


def history(
    model: ModelOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest N events.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Print the audit log: who changed what, when, why, and in which flow run."""
    settings = load_settings()
    events = open_store(settings).list_events(model, limit=limit)
    if as_json:
        json_output.emit({"events": [json_output.event(e) for e in events]})
        return
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


def doctor(
    fix: Annotated[bool, typer.Option("--fix", help="Repair what is safe to repair.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Compare the registry, the model store and models.config (and, when serving.grpc_address
    is set, what the running TF Serving serves); report (and --fix) each drift.

    Exits 1 while drift that needs a human remains.
    """
    settings = load_settings()
    from tasks.doctor import find_drift, repair

    store = open_store(settings)
    drifts = find_drift(
        store, settings.model_store, settings.serving_config_path, probe_retrain=True, grpc_address=settings.serving.grpc_address,
        base_paths=settings.serving.base_paths,
    )
    if as_json:
        fixed = repair(
            drifts, store, settings.model_store, settings.serving_config_path, actor=actor(),
            base_paths=settings.serving.base_paths,
        ) if fix and drifts else []
        remaining = (
            find_drift(
                store, settings.model_store, settings.serving_config_path, probe_retrain=True,
                grpc_address=settings.serving.grpc_address, base_paths=settings.serving.base_paths,
            )
            if fixed
            else drifts
        )
        json_output.emit(
            {
                "drift": [json_output.drift(d) for d in drifts],
                "fixed": fixed,
                "remaining": [json_output.drift(d) for d in remaining],
            }
        )
        if remaining:
            raise typer.Exit(1)
        return
    if not drifts:
        checked = "model store, models.config and TF Serving" if settings.serving.grpc_address else "model store and models.config"
        console.print(f"no drift: registry, {checked} agree")
        return
    for drift in drifts:
        console.print(str(drift), style="yellow" if drift.safe else "red", highlight=False)
    if not fix:
        console.print("run `tfrelease doctor --fix` to apply the safe repairs")
        raise typer.Exit(1)
    for line in repair(
        drifts, store, settings.model_store, settings.serving_config_path, actor=actor(), base_paths=settings.serving.base_paths
    ):
        console.print(f"fixed: {line}", highlight=False)
    remaining = find_drift(
        store, settings.model_store, settings.serving_config_path, probe_retrain=True, grpc_address=settings.serving.grpc_address,
        base_paths=settings.serving.base_paths,
    )
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
