"""The commands that run tfrelease's work or its long-lived processes: retrain, serve, slack-app and data drop.

Each imports what it runs (flows, Prefect, Slack Bolt, the data tasks) inside the command, so
that importing the command line stays cheap. ``tfrelease.cli`` registers the commands.
"""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import Annotated, Optional

import typer

from core.settings import ConfigError, Settings
from tfrelease.console import ModelOption, console, errors, load_settings, model_name, tracebacks_to_the_run_log_only


class Corruption(str, Enum):
    """The ways ``data drop --corrupt`` breaks a batch: ``tasks.data.CORRUPT_KINDS``, spelt out
    here because tasks.data imports pandas, which the command line must not load to build itself."""

    RANGE = "range"
    MISSING_COLUMN = "missing-column"
    LABELS = "labels"
    NULLS = "nulls"
    FEW_ROWS = "few-rows"


def parse_corruption(value: str | Corruption) -> Corruption:
    """``value`` as a :class:`Corruption`.

    Typer's own message for a bad choice quotes each choice; this one lists them as the help
    and the README do ("range, missing-column, ...").

    Raises:
        typer.BadParameter: ``value`` is not one of the kinds (a usage error: exit code 2).
    """
    try:
        return Corruption(value)
    except ValueError:
        kinds = ", ".join(kind.value for kind in Corruption)
        raise typer.BadParameter(f"choose one of {kinds}; got {value!r}") from None


def retrain(model: ModelOption = None) -> None:
    """Run the nightly retrain once, now, and print its outcome."""
    settings = load_settings()
    name = model_name(settings, model)
    from core.orchestrator import configure_prefect, reachable_prefect_api, start_temporary_server_in_background

    configure_prefect(settings)
    # What the night needs anyway starts first, on two cores: Great Expectations' worker process
    # (5-9 s of imports) and, without a server, Prefect's temporary one (6-16 s, its own
    # process), while this process imports the flow and TensorFlow (about 10 s).
    will_train = prepare_night(settings, name)
    server = start_temporary_server_in_background() if reachable_prefect_api() is None else None
    from flows.retrain import retrain as retrain_flow

    if will_train:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    if server is not None:
        server.result()
    tracebacks_to_the_run_log_only()
    state = asyncio.run(retrain_flow(model=name, return_state=True))
    if not state.is_completed():
        error = state.result(raise_on_failure=False)
        errors.print(f"retrain of {name} failed: {error}", style="red", highlight=False)
        raise typer.Exit(1)
    report = state.result()
    console.print(report.summary, highlight=False)


def prepare_night(settings: Settings, model: str) -> bool:
    """Start the Great Expectations worker (``tasks.gx_worker``) when ``model``'s night will
    validate and train, and say so: entries wait in its incoming folder, or it reads the bundled
    source, which delivers a batch each night. A night without new data starts nothing and
    stays quick. Imports neither Prefect nor TensorFlow.
    """
    incoming = settings.incoming_dir(model)
    if settings.model(model).source != "digits" and not (incoming.is_dir() and any(incoming.iterdir())):
        return False
    from tasks import gx_worker

    gx_worker.start()
    return True


def serve() -> None:
    """Serve the Prefect deployments from this process until interrupted.

    retrain/retrain-nightly-<model> for every configured model (schedule.cron in
    schedule.timezone, one run per model at a time), release/release and rollback/rollback
    (no schedule; run them with `prefect deployment run`). Needs a Prefect server at
    PREFECT_API_URL (`prefect server start`): schedules on a temporary one would vanish.
    """
    settings = load_settings()
    from core.orchestrator import configure_prefect, reachable_prefect_api

    configure_prefect(settings)
    url = reachable_prefect_api()
    if url is None:
        errors.print(
            "no Prefect server answers at PREFECT_API_URL; start one (`prefect server start`) and "
            "set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)",
            style="red",
        )
        raise typer.Exit(2)
    from deployments.schedule import build_deployments

    try:
        deployments = build_deployments(settings)
    except ValueError as error:
        errors.print(f"invalid schedule: {error}", style="red", highlight=False)
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


def slack_app() -> None:
    """Run the Slack receiver (Approve / Reject / Roll back buttons) until interrupted.

    HTTP on slack.host:slack.port at /slack/events, or Socket Mode when slack.app_token is set.
    Releases and rollbacks start runs of the release and rollback deployments when a Prefect
    server answers (as flow runs in this process when nobody serves them), and run here otherwise.
    Logs at INFO to stderr: where it listens, then one line per click.
    """
    settings = load_settings()
    from slack_bolt.error import BoltError

    from tfrelease.slack_app import serve as serve_slack

    try:
        serve_slack(settings)
    except (ConfigError, BoltError) as error:
        errors.print(f"{error}", style="red", highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        console.print("Slack receiver stopped")


def data_drop(
    model: ModelOption = None,
    corrupt: Annotated[
        Optional[Corruption],
        typer.Option(parser=parse_corruption, help="Drop a deliberately broken batch of this kind."),
    ] = None,
) -> None:
    """Drop the next bundled daily batch into the model's incoming folder."""
    settings = load_settings()
    name = model_name(settings, model)
    from tasks.data import DataFolders, NoMoreBatches, drop_bundled_batch

    if settings.model(name).source != "digits":
        errors.print(f"model {name} reads its own folder {settings.incoming_dir(name)}; only the bundled digits source has batches to drop", style="red")
        raise typer.Exit(2)
    try:
        path = drop_bundled_batch(DataFolders.for_model(settings, name), None if corrupt is None else corrupt.value)  # type: ignore[arg-type]
    except NoMoreBatches as error:
        errors.print(f"{error}", style="yellow")
        raise typer.Exit(1) from None
    console.print(f"dropped {path}")
