"""The commands that change what TF Serving serves: release, approve, reject and rollback.

Each release or rollback starts a run of the served Prefect deployment when a server answers
and a runner or worker serves it (``--wait`` follows the run); otherwise the work runs in this
process. Either way it first records the command line user's authorization in the registry
(``registry.authorizations``: the OS account of this process, what it may do and why), and the
run acts on that grant alone. ``rollback`` imports neither TensorFlow nor Prefect unless it runs
a flow: an orchestrator outage never blocks a rollback. ``tfrelease.cli`` registers the commands.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from core.settings import Settings
from tfrelease.console import (
    ModelOption,
    actor,
    console,
    errors,
    load_settings,
    model_name,
    open_store,
    tracebacks_to_the_run_log_only,
    version_or_exit,
)

if TYPE_CHECKING:
    from registry.models import AuthorizedAction
    from registry.store import RegistryStore

WaitOption = Annotated[
    bool, typer.Option("--wait", help="When the run goes to a served deployment, wait for it to end and print the outcome.")
]
# How long --wait follows a deployment's flow run: a release imports TensorFlow and smoke-tests
# (about 20 s here); a worker may first have to start, or wait for the model's lock.
WAIT_TIMEOUT_SECONDS = 1800.0


def launch(settings: Settings, url: str | None, deployment: str, parameters: dict[str, Any], what: str, *, wait: bool) -> bool:
    """Start a run of ``deployment`` (``<flow>/<deployment>``) with ``parameters`` on the Prefect
    server at ``url`` when a runner or worker serves it, and print the run (and its UI link).

    ``url`` is the server's API URL, or None when no server answers. ``what`` names the work in
    messages (e.g. "rollback of digits"). With ``wait``, follows the run to its end (at most
    ``WAIT_TIMEOUT_SECONDS``) and prints the model's production version once it completed.

    Returns:
        True when the run was started (and, with ``wait``, completed); False when there is no
        server or nobody serves the deployment: the caller then does the work itself.

    Raises:
        typer.Exit: code 1 when the server failed the call, or (with ``wait``) the run ended in
            any state but Completed or had not ended in time; the reason is printed on one line.
    """
    import httpx

    from core.orchestrator import launch_deployment, wait_for_run

    if url is None:
        return False
    try:
        run = launch_deployment(settings, deployment, parameters)
    except httpx.HTTPError as error:
        errors.print(f"could not start the {what} on the Prefect server at {url}: {error}", style="red", highlight=False)
        raise typer.Exit(1) from None
    if run is None:
        console.print(f"nobody serves {deployment} on {url} (no `tfrelease serve` or worker): the {what} runs here", style="yellow")
        return False
    console.print(f"{what} started as {run}", highlight=False)
    if run.url:
        console.print(f"  {run.url}", highlight=False, soft_wrap=True)
    if not wait:
        return True
    try:
        state, message = wait_for_run(run, timeout_seconds=WAIT_TIMEOUT_SECONDS)
    except TimeoutError as error:
        errors.print(f"{error}", style="red", highlight=False)
        raise typer.Exit(1) from None
    if state != "Completed":
        errors.print(f"{what} ended {state}: {message}", style="red", highlight=False)
        raise typer.Exit(1)
    from registry.lifecycle import PRODUCTION

    production = open_store(settings).get_alias(parameters["model"], PRODUCTION)
    console.print(f"{what} completed; {parameters['model']} production is version {production.version if production else 'none'}")
    return True


def _authorize(store: RegistryStore, action: AuthorizedAction, name: str, version: int, *, reason: str, **grant: Any) -> str:
    """Record that the command line user (:func:`tfrelease.console.actor`) authorises ``action``
    on ``name`` ``version`` for ``reason`` (``grant``: ``force``, a rollback's ``from_version``);
    returns the grant's id, the ``authorization`` parameter of the run that acts on it.

    Raises:
        typer.Exit: code 2 when the registry refuses the grant (e.g. a blank reason); the
            reason is printed on one line.
    """
    from registry.models import AuthorizationGrant

    try:
        return store.grant_authorization(
            AuthorizationGrant(action=action, model_name=name, version=version, actor=actor(), reason=reason, **grant)
        ).id
    except ValueError as error:
        errors.print(f"{error}", style="red", highlight=False)
        raise typer.Exit(2) from None


def _run_release(
    settings: Settings,
    name: str,
    version: int,
    *,
    reason: str,
    force: bool,
    wait: bool,
    canary: bool = False,
    soak_seconds: float | None = None,
) -> None:
    """Release ``name`` version ``version`` (as a canary soaking ``soak_seconds`` with
    ``canary``) on the command line user's authorization (see :func:`_authorize`): through the
    served release deployment (see :func:`launch`), else by running the release flow here and
    printing its summary.

    Raises:
        typer.Exit: code 1 when the release failed (nothing changed) or a followed run did not complete.
    """
    from core.orchestrator import RELEASE, configure_prefect, reachable_prefect_api, start_temporary_server
    from registry.models import AuthorizedAction

    configure_prefect(settings)
    action = AuthorizedAction.CANARY if canary else AuthorizedAction.RELEASE
    granted = _authorize(open_store(settings), action, name, version, reason=reason, force=force)
    parameters: dict[str, Any] = {"model": name, "version": version, "reason": reason, "force": force, "authorization": granted}
    if canary:
        parameters.update(canary=True, soak_seconds=soak_seconds)
    what = f"{'canary release' if canary else 'release'} of {name} version {version}"
    url = reachable_prefect_api()
    if launch(settings, url, RELEASE, parameters, what, wait=wait):
        return
    if url is None:
        start_temporary_server()
    from flows.release import release as release_flow
    from registry.lifecycle import PRODUCTION

    before = open_store(settings).get_alias(name, PRODUCTION)
    tracebacks_to_the_run_log_only()
    state = asyncio.run(release_flow(**parameters, return_state=True))
    if not state.is_completed():
        error = state.result(raise_on_failure=False)
        changed = _what_changed(settings, name, before.version if before else None)
        errors.print(f"{what} failed: {error}; {changed}", style="red", highlight=False)
        raise typer.Exit(1)
    console.print(state.result().summary, highlight=False)


def release(
    version: int,
    model: ModelOption = None,
    force: Annotated[bool, typer.Option("--force", help="Release a rejected version (needs --reason).")] = False,
    reason: Annotated[Optional[str], typer.Option(help="Why; recorded in the audit log.")] = None,
    wait: WaitOption = False,
    canary: Annotated[
        bool, typer.Option("--canary", help="Serve it beside production under the canary label while the watch compares them.")
    ] = False,
    soak: Annotated[
        Optional[str],
        typer.Option(help="With --canary: how long it soaks before promotion, as a duration (30m, 2h; default monitoring.canary_soak)."),
    ] = None,
) -> None:
    """Release a version to production: check, smoke-test, switch TF Serving, record.

    With --canary, the version is loaded beside production with TF Serving's `canary` label
    instead; the watch aborts it on a breach and promotes it after a clean soak. With a Prefect
    server whose release deployment is served (`tfrelease serve` or a worker), this starts a run
    of it and returns (--wait follows it); otherwise the release runs here.
    """
    settings = load_settings()
    name = model_name(settings, model)
    if force and not reason:
        errors.print("--force needs --reason: a forced release of a rejected version must say why", style="red")
        raise typer.Exit(2)
    if soak is not None and not canary:
        errors.print("--soak goes with --canary: only a canary soaks", style="red")
        raise typer.Exit(2)
    if canary and force:
        errors.print("--canary cannot be --force: a rejected version is never served as a canary", style="red")
        raise typer.Exit(2)
    soak_seconds = None
    if soak is not None:
        from core.settings import duration_seconds

        try:
            soak_seconds = duration_seconds(soak)
        except ValueError as error:
            errors.print(f"--soak: {error}", style="red", highlight=False)
            raise typer.Exit(2) from None
    _run_release(
        settings, name, version, reason=reason or "released from the CLI", force=force, wait=wait,
        canary=canary, soak_seconds=soak_seconds,
    )


def approve(
    version: int,
    model: ModelOption = None,
    reason: Annotated[str, typer.Option(help="Why.")] = "approved from the CLI",
    wait: WaitOption = False,
) -> None:
    """Approve a version awaiting approval and release it to production (as `release` does)."""
    settings = load_settings()
    name = model_name(settings, model)
    store = open_store(settings)
    record = version_or_exit(store, name, version)
    if record.status.value not in {"pending_approval", "approved"}:
        errors.print(f"{name} version {version} is {record.status.value}, not awaiting approval; use `tfrelease release {version}`", style="red")
        raise typer.Exit(1)
    # No separate "approved" write: the release records the human's decision (actor, reason) in
    # its promotion, so a release that fails leaves the version exactly as it was.
    _run_release(settings, name, version, reason=reason, force=False, wait=wait)


def reject(version: int, reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")], model: ModelOption = None) -> None:
    """Reject a version so that it is never released (except with release --force)."""
    settings = load_settings()
    name = model_name(settings, model)
    from registry.errors import RegistryError
    from tasks.model_card import document_version

    store = open_store(settings)
    try:
        record = store.reject(name, version, actor=actor(), reason=reason)
    except RegistryError as error:
        errors.print(f"{error}", style="red", highlight=False)
        raise typer.Exit(1) from None
    document_version(store, settings.model_store, name, version, actor=actor())
    console.print(f"{name} version {version} is now {record.status.value}: {reason}")


def rollback(
    model: ModelOption = None,
    to: Annotated[Optional[int], typer.Option("--to", help="Version to roll back to (default: the previous production version).")] = None,
    from_version: Annotated[
        Optional[int],
        typer.Option(
            "--from",
            help="The production version to leave (default: the one production is when the command starts); "
            "refused, changing nothing, if production is another version when the rollback takes the model's lock.",
        ),
    ] = None,
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")] = "rolled back from the CLI",
    wait: WaitOption = False,
) -> None:
    """Put the previous production version (or --to N) back into production.

    Reads production and the target first and prints them ("rolling back <model> from vX to
    vY"); the rollback then leaves only vX (or --from N): if production moved before it took the
    model's lock (a release or another rollback in between), it is refused as stale and changes
    nothing. With a Prefect server whose rollback deployment is served, this starts a run of it
    and returns (--wait follows it); with a server but nobody serving it, the flow runs here;
    without a server the rollback runs directly: an orchestrator outage never blocks a
    rollback. Never imports TensorFlow.
    """
    settings = load_settings()
    name = model_name(settings, model)
    from sqlalchemy.exc import SQLAlchemyError

    from registry.errors import RegistryError
    from registry.lifecycle import PREVIOUS, PRODUCTION
    from registry.models import AuthorizedAction
    from tasks.rollback import RollbackRefused, StaleRollback, rollback_model
    from tasks.serving_config import ServingConfigError
    from tasks.serving_reload import ServingReloadError

    store = open_store(settings)

    def refuse(message: str) -> typer.Exit:
        errors.print(f"rollback of {name} refused; nothing changed: {message}", style="red", highlight=False)
        return typer.Exit(1)

    def stale(expected: int) -> typer.Exit:
        now = store.get_alias(name, PRODUCTION)
        shown = f"v{now.version}" if now is not None else "no version"
        errors.print(
            f"rollback of {name} refused as stale; nothing changed: {name} production is now {shown}, not v{expected}",
            style="red", highlight=False,
        )
        return typer.Exit(1)

    # What the operator means, read before anything starts: the run only leaves this version.
    current = store.get_alias(name, PRODUCTION)
    if current is None:
        raise refuse(f"{name} has no production version to roll back from")
    leaving = current.version if from_version is None else from_version
    if leaving != current.version:
        raise stale(leaving)
    target = version_or_exit(store, name, to) if to is not None else store.get_alias(name, PREVIOUS)
    if target is None:
        raise refuse(f"{name} has no previous version to roll back to; name one with --to")
    if target.version == leaving:
        raise refuse(f"{name} version {target.version} is already in production")
    console.print(f"rolling back {name} from v{leaving} to v{target.version}", highlight=False)

    from core.orchestrator import ROLLBACK, reachable_prefect_api

    granted = _authorize(store, AuthorizedAction.ROLLBACK, name, target.version, reason=reason, from_version=leaving)
    parameters = {
        "model": name, "reason": reason, "to_version": target.version, "from_version": leaving, "authorization": granted,
    }
    url = reachable_prefect_api()
    if launch(settings, url, ROLLBACK, parameters, f"rollback of {name}", wait=wait):
        return
    try:
        if url is not None:
            from flows.rollback import rollback as rollback_flow

            tracebacks_to_the_run_log_only()
            state = asyncio.run(rollback_flow(**parameters, return_state=True))
            result = state.result()  # raises the flow's error, handled below; the flow told Slack
        else:
            result = rollback_model(
                store, settings, name, actor=actor(), reason=reason, to_version=target.version, expected_from=leaving,
                authorization=granted,
            )
            if settings.slack.enabled:  # imported only then: the rollback path stays light
                from slackbot.announce import announce_rollback

                announce_rollback(
                    settings, name, result.from_version, result.to_version, actor=actor(), reason=reason, origin=None, run=None
                )
    except StaleRollback:
        raise stale(leaving) from None
    except (RollbackRefused, RegistryError, ServingReloadError, ServingConfigError) as error:
        raise refuse(f"{error}") from None
    except (OSError, SQLAlchemyError) as error:  # a full disk, a registry that went away
        errors.print(f"rollback of {name} failed: {_one_line(error)}; {_what_changed(settings, name, leaving)}", style="red", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"{name} rolled back from version {result.from_version} to {result.to_version}; {settings.serving_config_path} updated")


def _one_line(error: BaseException) -> str:
    """``error`` as one line: SQLAlchemy's messages carry the statement and a link below the cause."""
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _what_changed(settings: Settings, model: str, production_before: int | None) -> str:
    """After a failed switch, what is true now, read back rather than assumed: "nothing
    changed" only when the registry still has ``production_before`` and ``models.config``
    still says what the registry says; otherwise which of the two moved, and the repair."""
    from registry.lifecycle import PRODUCTION
    from registry.store import RegistryStore
    from tasks.serving import served_models
    from tasks.serving_config import read_config

    try:
        store = RegistryStore.open(settings.registry_url)
        production = store.get_alias(model, PRODUCTION)
        in_step = read_config(settings.serving_config_path) == served_models(store, settings.model_store, settings.serving.base_paths)
    except Exception as error:  # the registry or the file cannot be read back either
        return f"what changed cannot be read back ({_one_line(error)}); check with `tfrelease doctor` once it can"
    now = production.version if production else None
    if now == production_before and in_step:
        still = f"production is still v{production_before}" if production_before else "has no production version"
        return f"nothing changed ({model} {still})"
    moved = (
        f"the registry has {model} production at {_shown(now)}" if now != production_before
        else f"the registry still has {_shown(production_before)}"
    )
    return f"{moved}, and models.config {'agrees' if in_step else 'disagrees'}; `tfrelease doctor --fix` puts serving back in step with the registry"


def _shown(version: int | None) -> str:
    return "no version" if version is None else f"v{version}"
