"""The ``tfrelease`` command line.

Listing commands read the registry only: they import neither TensorFlow nor Prefect.
"""

from __future__ import annotations

import asyncio
import getpass
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from core.settings import ConfigError, Settings, get_settings

app = typer.Typer(help="Nightly retraining and safe release of TensorFlow models to TF Serving.", no_args_is_help=True)
data_app = typer.Typer(help="Batches of training data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Tables are wider than the 80 columns Rich assumes when output is not a terminal.
console = Console(width=None if Console().is_terminal else 140)
errors = Console(stderr=True)

ModelOption = Annotated[Optional[str], typer.Option("--model", "-m", help="Model name (default: the configured default_model).")]
WaitOption = Annotated[
    bool, typer.Option("--wait", help="When the run goes to a served deployment, wait for it to end and print the outcome.")
]
# How long --wait follows a deployment's flow run: a release imports TensorFlow and smoke-tests
# (about 20 s here); a worker may first have to start, or wait for the model's lock.
WAIT_TIMEOUT_SECONDS = 1800.0


def _settings() -> Settings:
    try:
        return get_settings()
    except ConfigError as error:
        errors.print(f"[red]{error}[/red]", highlight=False)
        raise typer.Exit(2) from None


def _model_name(settings: Settings, model: str | None) -> str:
    name = model or settings.default_model
    try:
        settings.model(name)
    except ConfigError as error:
        errors.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    return name


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


@app.command()
def retrain(model: ModelOption = None) -> None:
    """Run the nightly retrain once, now, and print its outcome."""
    settings = _settings()
    name = _model_name(settings, model)
    from core.orchestrator import configure_prefect

    configure_prefect(settings)
    from flows.retrain import retrain as retrain_flow

    state = asyncio.run(retrain_flow(model=name, return_state=True))
    if not state.is_completed():
        error = state.result(raise_on_failure=False)
        errors.print(f"[red]retrain of {name} failed:[/red] {error}", highlight=False)
        raise typer.Exit(1)
    report = state.result()
    console.print(report.summary, highlight=False)


@app.command()
def versions(model: ModelOption = None) -> None:
    """List model versions with status and key metrics."""
    settings = _settings()
    from registry.store import RegistryStore

    store = RegistryStore.open(settings.registry_url)
    rows = store.list_versions(model)
    production = {m: store.get_alias(m, "production") for m in {r.model_name for r in rows}}
    table = Table()
    for column in ("model", "version", "status", "accuracy", "macro F1", "loss", "baseline", "created (UTC)", "batches"):
        table.add_column(column, no_wrap=True, justify="left" if column in {"model", "status", "created (UTC)"} else "right")
    for row in rows:
        metrics = row.metrics or {}
        is_production = production.get(row.model_name) is not None and production[row.model_name].version == row.version
        table.add_row(
            row.model_name,
            str(row.version),
            f"[bold green]{row.status.value}[/bold green]" if is_production else row.status.value,
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


@app.command()
def show(version: int, model: ModelOption = None) -> None:
    """Print one model version in full: metrics beside its baseline's, data, lineage, decision."""
    settings = _settings()
    name = _model_name(settings, model)
    from registry.errors import RegistryError
    from registry.store import RegistryStore

    try:
        row = RegistryStore.open(settings.registry_url).get_version(name, version)
    except RegistryError as error:
        errors.print(f"[red]{error}[/red]", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"[bold]{row.model_name} version {row.version}[/bold]: {row.status.value}", highlight=False)
    metrics, baseline = row.metrics or {}, row.baseline_metrics or {}
    table = Table("metric", f"v{row.version}", f"baseline v{row.baseline_version}" if row.baseline_version else "baseline (none)", "change")
    for key in ("accuracy", "loss", "macro_f1"):
        new, old = metrics.get(key), baseline.get(key)
        change = f"{new - old:+.4f}" if new is not None and old is not None else ""
        table.add_row(key, _fraction(new), _fraction(old), change)
    for k, (new, old) in enumerate(zip(metrics.get("per_class_recall", []), baseline.get("per_class_recall", []) or [None] * 99)):
        table.add_row(f"recall {k}", _fraction(new), _fraction(old), "" if old is None else f"{new - old:+.4f}")
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


@app.command()
def history(model: ModelOption = None, limit: Annotated[int, typer.Option(help="Newest N events.")] = 50) -> None:
    """Print the audit log: who changed what, when, why, and in which flow run."""
    settings = _settings()
    from registry.store import RegistryStore

    events = RegistryStore.open(settings.registry_url).list_events(model, limit=limit)
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


@app.command()
def doctor(fix: Annotated[bool, typer.Option("--fix", help="Repair what is safe to repair.")] = False) -> None:
    """Compare the registry, the model store and models.config; report (and --fix) each drift.

    Exits 1 while drift that needs a human remains.
    """
    settings = _settings()
    from registry.store import RegistryStore
    from tasks.doctor import find_drift, repair

    store = RegistryStore.open(settings.registry_url)
    drifts = find_drift(store, settings.model_store, settings.serving_config_path)
    if not drifts:
        console.print("no drift: registry, model store and models.config agree")
        return
    for drift in drifts:
        console.print(f"{'[yellow]' if drift.safe else '[red]'}{drift}[/]", highlight=False)
    if not fix:
        console.print("run `tfrelease doctor --fix` to apply the safe repairs")
        raise typer.Exit(1)
    for line in repair(drifts, store, settings.model_store, settings.serving_config_path, actor=_actor()):
        console.print(f"fixed: {line}", highlight=False)
    remaining = find_drift(store, settings.model_store, settings.serving_config_path)
    for drift in remaining:
        console.print(f"[red]left for a human:[/red] {drift}", highlight=False)
    if remaining:
        raise typer.Exit(1)


@app.command()
def gc(
    model: ModelOption = None,
    keep: Annotated[Optional[int], typer.Option(help="Newest unprotected versions to keep (default: the model's retention.keep).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan, delete nothing.")] = False,
) -> None:
    """Delete the files of old versions; never production, previous, pending or approved ones."""
    settings = _settings()
    name = _model_name(settings, model)
    from registry.store import RegistryStore
    from tasks.retention import apply_gc, plan_gc

    store = RegistryStore.open(settings.registry_url)
    try:
        plan = plan_gc(store, name, settings.model(name).keep_versions if keep is None else keep)
    except ValueError as error:
        errors.print(f"[red]{error}[/red]", highlight=False)
        raise typer.Exit(2) from None
    console.print(plan.describe(), highlight=False)
    if dry_run or not plan.delete:
        return
    deleted = apply_gc(plan, store, settings.model_store, actor=_actor())
    console.print(f"deleted the files of version(s) {', '.join(map(str, deleted)) or 'none'}")


db_app = typer.Typer(help="The registry database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the registry's schema migrations (also done automatically at start)."""
    settings = _settings()
    from registry.store import RegistryStore

    RegistryStore.open(settings.registry_url)
    console.print(f"registry schema is up to date ({settings.registry_url.split('://')[0]})")


def _fraction(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _launch(settings: Settings, url: str | None, deployment: str, parameters: dict, what: str, *, wait: bool) -> bool:
    """Start ``deployment`` on the Prefect server at ``url`` (None: no server answers) when a
    runner or worker serves it; True when it was started (and, with ``wait``, ended Completed,
    else exit 1). False means the caller runs the work itself."""
    import httpx

    from core.orchestrator import launch_deployment, wait_for_run

    if url is None:
        return False
    try:
        run = launch_deployment(settings, deployment, parameters)
    except httpx.HTTPError as error:
        errors.print(f"[red]could not start the {what} on the Prefect server at {url}:[/red] {error}", highlight=False)
        raise typer.Exit(1) from None
    if run is None:
        console.print(f"[yellow]nobody serves {deployment} on {url} (no `tfrelease serve` or worker): the {what} runs here[/yellow]")
        return False
    console.print(f"{what} started as {run}", highlight=False)
    if run.url:
        console.print(f"  {run.url}", highlight=False, soft_wrap=True)
    if not wait:
        return True
    try:
        state, message = wait_for_run(run, timeout_seconds=WAIT_TIMEOUT_SECONDS)
    except TimeoutError as error:
        errors.print(f"[red]{error}[/red]", highlight=False)
        raise typer.Exit(1) from None
    if state != "Completed":
        errors.print(f"[red]{what} ended {state}:[/red] {message}", highlight=False)
        raise typer.Exit(1)
    production = _store(settings).get_alias(parameters["model"], "production")
    console.print(f"{what} completed; {parameters['model']} production is version {production.version if production else 'none'}")
    return True


def _run_release(settings: Settings, name: str, version: int, *, reason: str, force: bool, wait: bool) -> None:
    from core.orchestrator import RELEASE, configure_prefect, reachable_prefect_api

    configure_prefect(settings)
    parameters = {"model": name, "version": version, "actor": _actor(), "reason": reason, "force": force}
    what = f"release of {name} version {version}"
    if _launch(settings, reachable_prefect_api(), RELEASE, parameters, what, wait=wait):
        return
    from flows.release import release as release_flow

    state = asyncio.run(release_flow(**parameters, return_state=True))
    if not state.is_completed():
        errors.print(f"[red]{what} failed; nothing changed:[/red] {state.result(raise_on_failure=False)}", highlight=False)
        raise typer.Exit(1)
    console.print(state.result().summary, highlight=False)


@app.command()
def release(
    version: int,
    model: ModelOption = None,
    force: Annotated[bool, typer.Option("--force", help="Release a rejected version (needs --reason).")] = False,
    reason: Annotated[Optional[str], typer.Option(help="Why; recorded in the audit log.")] = None,
    wait: WaitOption = False,
) -> None:
    """Release a version to production: check, smoke-test, switch TF Serving, record.

    With a Prefect server whose release deployment is served (`tfrelease serve` or a worker),
    this starts a run of it and returns (--wait follows it); otherwise the release runs here.
    """
    settings = _settings()
    name = _model_name(settings, model)
    if force and not reason:
        errors.print("[red]--force needs --reason: a forced release of a rejected version must say why[/red]")
        raise typer.Exit(2)
    _run_release(settings, name, version, reason=reason or "released from the CLI", force=force, wait=wait)


@app.command()
def approve(
    version: int,
    model: ModelOption = None,
    reason: Annotated[str, typer.Option(help="Why.")] = "approved from the CLI",
    wait: WaitOption = False,
) -> None:
    """Approve a version awaiting approval and release it to production (as `release` does)."""
    settings = _settings()
    name = _model_name(settings, model)
    store = _store(settings)
    record = _version(store, name, version)
    if record.status.value not in {"pending_approval", "approved"}:
        errors.print(f"[red]{name} version {version} is {record.status.value}, not awaiting approval; use `tfrelease release {version}`[/red]")
        raise typer.Exit(1)
    if record.status.value == "pending_approval":
        store.approve(name, version, actor=_actor(), reason=reason)
    _run_release(settings, name, version, reason=reason, force=False, wait=wait)


@app.command()
def reject(version: int, reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")], model: ModelOption = None) -> None:
    """Reject a version so that it is never released (except with release --force)."""
    settings = _settings()
    name = _model_name(settings, model)
    from registry.errors import RegistryError
    from tasks.model_card import document_version

    store = _store(settings)
    try:
        record = store.reject(name, version, actor=_actor(), reason=reason)
    except RegistryError as error:
        errors.print(f"[red]{error}[/red]", highlight=False)
        raise typer.Exit(1) from None
    document_version(store, settings.model_store, name, version, actor=_actor())
    console.print(f"{name} version {version} is now {record.status.value}: {reason}")


@app.command()
def rollback(
    model: ModelOption = None,
    to: Annotated[Optional[int], typer.Option("--to", help="Version to roll back to (default: the previous production version).")] = None,
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")] = "rolled back from the CLI",
    wait: WaitOption = False,
) -> None:
    """Put the previous production version (or --to N) back into production.

    With a Prefect server whose rollback deployment is served, this starts a run of it and
    returns (--wait follows it); with a server but nobody serving it, the flow runs here;
    without a server the rollback runs directly: an orchestrator outage never blocks a
    rollback. Never imports TensorFlow.
    """
    settings = _settings()
    name = _model_name(settings, model)
    from core.orchestrator import ROLLBACK, reachable_prefect_api
    from registry.errors import RegistryError
    from tasks.rollback import RollbackRefused, rollback_model
    from tasks.serving_config import ServingConfigError
    from tasks.serving_reload import ServingReloadError

    parameters = {"model": name, "actor": _actor(), "reason": reason, "to_version": to}
    url = reachable_prefect_api()
    if _launch(settings, url, ROLLBACK, parameters, f"rollback of {name}", wait=wait):
        return
    try:
        if url is not None:
            from flows.rollback import rollback as rollback_flow

            state = asyncio.run(rollback_flow(**parameters, return_state=True))
            result = state.result()  # raises the flow's error, handled below; the flow told Slack
        else:
            result = rollback_model(_store(settings), settings, name, actor=_actor(), reason=reason, to_version=to)
            if settings.slack.enabled:  # imported only then: the rollback path stays light
                from slackbot.announce import announce_rollback

                announce_rollback(
                    settings, name, result.from_version, result.to_version, actor=_actor(), reason=reason, origin=None, run=None
                )
    except (RollbackRefused, RegistryError, ServingReloadError, ServingConfigError) as error:
        errors.print(f"[red]rollback of {name} refused; nothing changed:[/red] {error}", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"{name} rolled back from version {result.from_version} to {result.to_version}; {settings.serving_config_path} updated")


@app.command()
def serve() -> None:
    """Serve the Prefect deployments from this process until interrupted.

    retrain/retrain-nightly-<model> for every configured model (schedule.cron in
    schedule.timezone, one run per model at a time), release/release and rollback/rollback
    (no schedule; run them with `prefect deployment run`). Needs a Prefect server at
    PREFECT_API_URL (`prefect server start`): schedules on a temporary one would vanish.
    """
    settings = _settings()
    from core.orchestrator import configure_prefect, reachable_prefect_api

    configure_prefect(settings)
    url = reachable_prefect_api()
    if url is None:
        errors.print(
            "[red]no Prefect server answers at PREFECT_API_URL; start one (`prefect server start`) and "
            "set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)[/red]"
        )
        raise typer.Exit(2)
    from deployments.schedule import build_deployments

    try:
        deployments = build_deployments(settings)
    except ValueError as error:
        errors.print(f"[red]invalid schedule:[/red] {error}", highlight=False)
        raise typer.Exit(2) from None
    console.print(
        f"serving {', '.join(d.name for d in deployments)} on {url}; "
        f"nightly retrain at {settings.schedule.cron!r} ({settings.schedule.timezone})",
        highlight=False,
    )
    import prefect

    try:
        prefect.serve(*deployments, pause_on_shutdown=False)
    except KeyboardInterrupt:
        console.print("stopped; the deployments stay active and run again at the next `tfrelease serve`")


@app.command("slack-app")
def slack_app() -> None:
    """Run the Slack receiver (Approve / Reject / Roll back buttons) until interrupted.

    HTTP on slack.host:slack.port at /slack/events, or Socket Mode when slack.app_token is set.
    Releases and rollbacks start runs of the release and rollback deployments when a Prefect
    server answers (as flow runs in this process when nobody serves them), and run here otherwise.
    """
    settings = _settings()
    import logging

    from slack_bolt.error import BoltError

    from tfrelease.slack_app import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve(settings)
    except (ConfigError, BoltError) as error:
        errors.print(f"[red]{error}[/red]", highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("Slack receiver stopped")


def _store(settings: Settings):
    from registry.store import RegistryStore

    return RegistryStore.open(settings.registry_url)


def _version(store, name: str, version: int):
    from registry.errors import RegistryError

    try:
        return store.get_version(name, version)
    except RegistryError as error:
        errors.print(f"[red]{error}[/red]", highlight=False)
        raise typer.Exit(1) from None


@data_app.command("drop")
def data_drop(
    model: ModelOption = None,
    corrupt: Annotated[
        Optional[str],
        typer.Option(help="Drop a deliberately broken batch: range, missing-column, labels, nulls or few-rows."),
    ] = None,
) -> None:
    """Drop the next bundled daily batch into the model's incoming folder."""
    settings = _settings()
    name = _model_name(settings, model)
    from tasks.data import CORRUPT_KINDS, DataFolders, NoMoreBatches, drop_bundled_batch

    if settings.model(name).source != "digits":
        errors.print(f"[red]model {name} reads its own folder {settings.incoming_dir(name)}; only the bundled digits source has batches to drop[/red]")
        raise typer.Exit(2)
    if corrupt is not None and corrupt not in CORRUPT_KINDS:
        errors.print(f"[red]--corrupt must be one of {', '.join(CORRUPT_KINDS)}; got {corrupt!r}[/red]")
        raise typer.Exit(2)
    try:
        path = drop_bundled_batch(DataFolders.for_model(settings, name), corrupt)  # type: ignore[arg-type]
    except NoMoreBatches as error:
        errors.print(f"[yellow]{error}[/yellow]")
        raise typer.Exit(1) from None
    console.print(f"dropped {path}")
