"""Telling Slack what the watch and the canaries did.

The watch flow measures each model's production version (and a soaking canary) in Prometheus
every minute; it and the canary paths (the release flow's canary branch, the CLI's canary
commands, the Slack receiver) call these at the moment something happened: an automatic
rollback, a blind spell starting or ending, a canary started, aborted, promoted, or soaked
clean and waiting for a human. The messages are built by ``slackbot.monitoring``.

Each event has its own function of plain values (:func:`announce_monitor_rollback`,
:func:`announce_blind`, :func:`announce_restored`, :func:`announce_canary_aborted`,
:func:`announce_canary_promoted`, :func:`announce_canary_soaked`); :func:`announce_watch`
picks the ones a watch's outcome calls for, :func:`announce_canary_result` the one a canary
command's result calls for, and :func:`announce_watch_failure` posts a failed watch.

A blind spell is announced once, not every minute: the registry's alarm ``blind`` on the
model (``RegistryStore.raise_alarm`` / ``clear_alarm``) says whether this call is the one that
raised or cleared it, so of several watches (or minutes) exactly one posts each change.

Nothing here raises: a Slack failure is logged by ``slackbot.client``, a message that cannot
be built and a registry that cannot be read are logged as warnings; with Slack off nothing is
sent. Every message goes to the configured channel, except a canary started by a click on
"Approve as canary", which is shown in the clicked message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from core.orchestrator import FlowRunRef
from core.settings import Settings
from registry.store import RegistryStore
from slackbot.announce import describe_error, failed_run_message
from slackbot.client import post_message
from slackbot.monitoring import (
    MONITOR_ACTOR,
    Row,
    aware,
    canary_aborted_message,
    canary_promoted_message,
    canary_soaked_message,
    canary_started_message,
    monitor_rollback_message,
    monitoring_blind_message,
    monitoring_restored_message,
)
from slackbot.payloads import ClickedMessage, SlackMessage
from slackbot.posted import post_recorded, refresh_messages, update_posted
from slackbot.updates import approved_as_canary_update

from tasks.watch import MonitoringBlind

if TYPE_CHECKING:
    from tasks.canary import CanaryResult
    from tasks.watch import WatchOutcome

logger = logging.getLogger(__name__)

BLIND_ALARM = "blind"
FAILED_ALARM = "watch_failed"
"""The registry alarm kind of a model the watch cannot judge (no Prometheus, no data, too few requests)."""


def announce_monitor_rollback(
    settings: Settings, model: str, from_version: int, to_version: int, *, reasons: Sequence[str],
    rows: Sequence[Row], queries: Mapping[str, str], graph_url: str | None, run: FlowRunRef | None,
) -> bool:
    """The watch rolled ``model`` back from ``from_version`` to ``to_version`` by itself
    (actor ``monitor``): post why, with the figures (``rows``: figure, measured, threshold,
    window, verdict), the PromQL ``queries``, the graph link and the run; the model's messages
    whose Roll back buttons it made stale lose them (``slackbot.posted.refresh_messages``).
    True when Slack took it."""
    posted = _post(
        settings,
        lambda: monitor_rollback_message(
            model, from_version, to_version, reasons=reasons, rows=rows, queries=queries, graph_url=graph_url, run=run
        ),
        f"the automatic rollback of {model} from v{from_version} to v{to_version}",
    )
    refresh_messages(settings, model)
    return posted


def announce_blind(
    settings: Settings, store: RegistryStore, model: str, *, reason: str, queries: Mapping[str, str],
    graph_url: str | None, run: FlowRunRef | None,
) -> bool:
    """The watch cannot judge ``model`` (``reason``: Prometheus unreachable, no data, too few
    requests): raise the model's ``blind`` alarm and, only when this call raised it (the first
    blind minute of a spell), post that nothing is rolled back automatically until the watch
    sees data again. Returns whether a message was posted (False on later blind minutes, with
    Slack off or failing, or when the registry could not be written: logged as a warning).

    The alarm stays raised when the post fails: the spell is not announced again.
    """
    try:
        raised = store.raise_alarm(model, BLIND_ALARM, reason)
    except Exception as error:  # the registry is unreachable or refused: the watch goes on
        logger.warning("could not raise the blind alarm of %s in the registry: %s: %s", model, type(error).__name__, error)
        return False
    if not raised:
        return False
    return _post(
        settings,
        lambda: monitoring_blind_message(model, reason=reason, queries=queries, graph_url=graph_url, run=run),
        f"the blind watch of {model}",
    )


def announce_restored(settings: Settings, store: RegistryStore, model: str, *, run: FlowRunRef | None) -> bool:
    """The watch sees data for ``model`` again: clear its ``blind`` alarm and, only when this
    call cleared one, post that automatic rollback is back on. Returns whether a message was
    posted (False when there was no blind spell, with Slack off or failing, or when the
    registry could not be written: logged as a warning)."""
    try:
        cleared = store.clear_alarm(model, BLIND_ALARM)
    except Exception as error:  # as in announce_blind
        logger.warning("could not clear the blind alarm of %s in the registry: %s: %s", model, type(error).__name__, error)
        return False
    if not cleared:
        return False
    return _post(settings, lambda: monitoring_restored_message(model, run=run), f"the restored watch of {model}")


def announce_canary_started(
    settings: Settings, started: CanaryResult, *, origin: ClickedMessage | None, run: FlowRunRef | None
) -> bool:
    """``started.version`` serves as canary beside ``started.production_version`` until
    ``started.soak_until`` (a naive time is taken as UTC), started by ``started.actor``.
    Started by a click on "Approve as canary" (``origin``): the clicked approval request shows
    "approved as canary by <user>, soaking until <time>" without its buttons. Otherwise a new
    message is posted. True when Slack took it."""
    model, version = started.model, started.version
    if origin is not None:
        until = aware(started.soak_until) if started.soak_until is not None else None
        try:
            message = approved_as_canary_update(
                origin.message, model, version, origin.user, datetime.now(UTC), soak_until=until, run=run
            )
        except Exception:
            logger.exception("could not build the Slack update of the canary of %s v%s; not sent", model, version)
            return False
        return update_posted(settings, origin.channel, origin.ts, message)
    return _post(
        settings,
        lambda: canary_started_message(
            model, version, started.production_version, actor=started.actor, soak_until=started.soak_until, run=run
        ),
        f"the canary of {model} v{version}",
    )


def announce_canary_aborted(
    settings: Settings, model: str, version: int, production_version: int, *, actor: str, reasons: Sequence[str],
    rows: Sequence[Row], queries: Mapping[str, str], graph_url: str | None, run: FlowRunRef | None,
) -> bool:
    """The canary ``version`` was aborted by ``actor`` (``monitor`` on a breach); production
    stayed on ``production_version``. Posts why, with the figures, queries and graph link as
    :func:`announce_monitor_rollback`. True when Slack took it."""
    return _post(
        settings,
        lambda: canary_aborted_message(
            model, version, production_version, actor=actor, reasons=reasons, rows=rows, queries=queries,
            graph_url=graph_url, run=run,
        ),
        f"the aborted canary of {model} v{version}",
    )


def announce_canary_promoted(
    settings: Settings, model: str, version: int, previous_version: int | None, *, actor: str, summary: str,
    run: FlowRunRef | None,
) -> bool:
    """The canary ``version`` is production now (promoted by ``actor``): posts the ``summary``
    with a Roll back button to ``previous_version`` (when there is one), recorded as the
    version's message, once the model's messages it made stale are brought up to date
    (``slackbot.posted.refresh_messages``). True when Slack took it."""
    refresh_messages(settings, model)
    return _post(
        settings,
        lambda: canary_promoted_message(model, version, previous_version, actor=actor, summary=summary, run=run),
        f"the promoted canary of {model} v{version}",
        record=(model, version),
    )


def announce_canary_soaked(settings: Settings, model: str, version: int, *, run: FlowRunRef | None) -> bool:
    """The canary ``version`` soaked clean and the policy asks a human: posts how to promote it
    (``tfrelease canary promote --model <model>``). True when Slack took it."""
    return _post(settings, lambda: canary_soaked_message(model, version, run=run), f"the soaked canary of {model} v{version}")


def announce_canary_result(
    settings: Settings, result: CanaryResult, *, run: FlowRunRef | None, reason: str | None = None
) -> bool:
    """A canary command's ``result`` (``tasks.canary``), as done from the CLI: started,
    aborted (production unchanged; ``reason`` shown as why, when given) or promoted (with a
    Roll back button to the version it replaced). True when Slack took it."""
    if result.outcome == "started":
        return announce_canary_started(settings, result, origin=None, run=run)
    if result.outcome == "aborted":
        return announce_canary_aborted(
            settings, result.model, result.version, result.production_version, actor=result.actor,
            reasons=[reason] if reason else [], rows=(), queries={}, graph_url=None, run=run,
        )
    return announce_canary_promoted(
        settings, result.model, result.version, result.previous_version, actor=result.actor, summary=result.summary, run=run
    )


def announce_watch(settings: Settings, store: RegistryStore, outcome: WatchOutcome, *, run: FlowRunRef | None) -> bool:
    """Tell Slack what one watch (``tasks.watch.watch_model``) saw and did: a blind verdict
    raises the blind alarm (posted once per spell, :func:`announce_blind`); any other verdict
    clears it (posted when there was one, :func:`announce_restored`), then the action is
    posted: an automatic rollback, an aborted, promoted or soaked canary. Nothing for a healthy
    verdict without an action, or when nothing was watched. True when something was posted."""
    model, verdict = outcome.model, outcome.verdict
    if verdict is None:
        return False
    queries = _queries(outcome)
    if outcome.blind:
        reason = "; ".join(verdict.reasons) or outcome.detail
        return announce_blind(settings, store, model, reason=reason, queries=queries, graph_url=outcome.graph_url, run=run)
    posted = announce_restored(settings, store, model, run=run)
    _quietly_clear(store, model, FAILED_ALARM)
    rows, reasons = verdict.rows(), verdict.reasons
    if outcome.action == "rolled_back" and outcome.from_version is not None and outcome.to_version is not None:
        posted |= announce_monitor_rollback(
            settings, model, outcome.from_version, outcome.to_version, reasons=reasons, rows=rows, queries=queries,
            graph_url=outcome.graph_url, run=run,
        )
    elif outcome.action == "canary_aborted" and outcome.from_version is not None and outcome.to_version is not None:
        posted |= announce_canary_aborted(
            settings, model, outcome.from_version, outcome.to_version, actor=MONITOR_ACTOR, reasons=reasons, rows=rows,
            queries=queries, graph_url=outcome.graph_url, run=run,
        )
    elif outcome.action == "canary_promoted" and outcome.to_version is not None:
        summary = f"The canary soaked clean: {outcome.detail}" if outcome.detail else "The canary soaked clean."
        posted |= announce_canary_promoted(
            settings, model, outcome.to_version, outcome.from_version, actor=MONITOR_ACTOR, summary=summary, run=run
        )
    elif outcome.action == "canary_soaked" and outcome.from_version is not None:
        posted |= announce_canary_soaked(settings, model, outcome.from_version, run=run)
    return posted


def announce_watch_failure(
    settings: Settings, store: RegistryStore, model: str, error: BaseException | object, *,
    run: FlowRunRef | None, step: str | None = None,
) -> bool:
    """A watch of ``model`` failed with ``error`` (a refused query, a rollback that could not
    happen, a serving switch that failed): posted as a failed run, once per spell of failures
    (the model's ``watch_failed`` alarm; the next watch that reaches a verdict clears it), so a
    broken query does not post every minute. A blind watch fails too
    (``tasks.watch.MonitoringBlind``): :func:`announce_watch` announced that, so nothing is
    posted here. True when Slack took it."""
    if isinstance(error, MonitoringBlind):
        return False
    try:
        raised = store.raise_alarm(model, FAILED_ALARM, describe_error(error))
    except Exception as failure:  # the registry is unreachable: say it anyway, this once
        logger.warning("could not raise the watch_failed alarm of %s: %s: %s", model, type(failure).__name__, failure)
        raised = True
    if not raised:
        return False
    return _post(
        settings, lambda: failed_run_message(model, "watch", describe_error(error), step, run), f"the failed watch of {model}"
    )


def _queries(outcome: WatchOutcome) -> dict[str, str]:
    """The PromQL of the judged figures, then production's (named "production <figure>") when
    a canary was compared with it."""
    verdict = outcome.verdict
    queries = dict(verdict.figures.queries) if verdict is not None and verdict.figures is not None else {}
    baseline = outcome.baseline or (verdict.baseline if verdict is not None else None)
    if baseline is not None:
        queries.update({f"production {name}": query for name, query in baseline.queries.items()})
    return queries


def _post(
    settings: Settings, build: Callable[[], SlackMessage], what: str, *, record: tuple[str, int] | None = None
) -> bool:
    """Build the message and post it to the channel (recorded as the message of ``record``,
    a model and version, when given); True when Slack took it. A message that cannot be built
    (e.g. a model name so long a block id passes 255) is logged, not raised."""
    try:
        message = build()
    except Exception:
        logger.exception("could not build the Slack message of %s; not sent", what)
        return False
    if record is not None:
        return post_recorded(settings, *record, message) is not None
    return post_message(settings.slack, message) is not None


def _quietly_clear(store: RegistryStore, model: str, kind: str) -> None:
    try:
        store.clear_alarm(model, kind)
    except Exception as error:  # the next watch clears it
        logger.warning("could not clear the %s alarm of %s: %s: %s", kind, model, type(error).__name__, error)
