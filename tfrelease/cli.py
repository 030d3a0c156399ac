"""The ``tfrelease`` command line.

Listing commands read the registry only: they import neither TensorFlow nor Prefect.
"""

from __future__ import annotations

import getpass
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from tfrelease.settings import ConfigError, Settings, get_settings

app = typer.Typer(help="Nightly retraining and safe release of TensorFlow models to TF Serving.", no_args_is_help=True)
data_app = typer.Typer(help="Batches of training data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
errors = Console(stderr=True)

ModelOption = Annotated[Optional[str], typer.Option("--model", "-m", help="Model name (default: the configured default_model).")]


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
    from tfrelease.orchestrator import configure_prefect

    configure_prefect(settings)
    from flows.retrain import retrain as retrain_flow

    state = retrain_flow(model=name, return_state=True)
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
    table = Table(title=f"model versions ({settings.registry_url.split('://')[0]} registry)")
    for column in ("model", "version", "status", "accuracy", "macro F1", "loss", "baseline", "created (UTC)", "batches"):
        table.add_column(column, justify="right" if column in {"version", "accuracy", "macro F1", "loss", "baseline"} else "left")
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
            row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(len(row.batches or [])),
        )
    if not rows:
        console.print("no model versions yet: run `tfrelease retrain`")
        return
    console.print(table)


def _fraction(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


@app.command()
def approve(version: int, model: ModelOption = None, reason: Annotated[str, typer.Option(help="Why.")] = "approved from the CLI") -> None:
    """Approve a pending model version and release it to production."""
    settings = _settings()
    name = _model_name(settings, model)
    from registry.errors import RegistryError
    from registry.store import RegistryStore
    from tasks.release import promote_version

    store = RegistryStore.open(settings.registry_url)
    try:
        before = store.get_alias(name, "production")
        promote_version(store, settings, name, version, actor=_actor(), reason=reason, flow_run_id=None)
    except RegistryError as error:
        errors.print(f"[red]{error}[/red]", highlight=False)
        raise typer.Exit(1) from None
    was = f"version {before.version}" if before else "no version"
    console.print(f"{name} version {version} is now production (was {was}); {settings.serving_config_path} updated")


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
