"""The heavy work a click starts, run in a separate process so that the Slack receiver stays light.

A release or canary started without Prefect smoke-tests the version, which imports TensorFlow
(about 11 s of CPU, much of it holding the GIL) and keeps it loaded: in the receiver's process
that slowed every acknowledgement (p99 0.3-0.4 s during a release against 0.02 s idle; see
``benchmarks/receiver_ack.py``). So :func:`run_apart` runs the work in a fresh process
(multiprocessing's ``spawn``: nothing of the receiver is inherited, and nothing the child
imports comes back) and waits for it on the click's worker thread; the receiver never
imports TensorFlow. A flow run made here because nobody serves its deployment goes the same way.

The work functions (:func:`release_apart`, :func:`canary_apart`, :func:`flow_apart`) report
their outcome themselves, in the clicked message, as a flow run does: a release that fails in
the child is shown there with its real error, and the outcome reaches Slack even if the
receiver stops meanwhile. They return an :class:`Ended` (plain data: many of the errors they
catch cannot be pickled back), which the receiver logs.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

from pydantic import BaseModel

from core.settings import Settings
from registry.store import RegistryStore
from slackbot.announce import announce_release, announce_release_failure, describe_error
from slackbot.payloads import ClickedMessage
from slackbot.watch import announce_canary_started


class Ended(BaseModel):
    """How work run apart ended: ``text`` says what happened; on failure ``error`` is
    ``"<type>: <message>"`` and ``traceback`` the child's traceback (already told in Slack)."""

    text: str
    run_id: str | None = None  # the Prefect flow run, when the work was one
    error: str | None = None
    traceback: str | None = None

    @classmethod
    def failed(cls, what: str, error: BaseException, run_id: str | None = None) -> Ended:
        described = describe_error(error)
        formatted = "".join(traceback.format_exception(error))
        return cls(text=f"{what} failed: {described}", run_id=run_id, error=described, traceback=formatted)


def run_apart(work: Callable[..., Ended], *args: Any) -> Ended:
    """``work(*args)`` in a new process, waited for; ``work`` must be a module-level function
    and ``args`` picklable.

    Raises:
        concurrent.futures.process.BrokenProcessPool: the process died before ``work`` returned
            (killed, out of memory); its outcome may not have reached Slack.
        Whatever ``work`` raises (the work functions here return failures as :class:`Ended`).
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(work, *args).result()


def release_apart(settings: Settings, actor: str, origin: ClickedMessage, parameters: dict[str, Any]) -> Ended:
    """The release flow's steps without Prefect (``tasks.release.release_version``) for
    ``actor``, with the release deployment's ``parameters`` (model, version, reason,
    authorization), then "released" (or "release failed") in the clicked message ``origin``."""
    from tasks.release import release_version

    model, version = parameters["model"], parameters["version"]
    store = RegistryStore.open(settings.registry_url)
    try:
        result = release_version(
            store, settings, model, version, actor=actor, reason=parameters["reason"],
            authorization=parameters.get("authorization"),
        )
    except Exception as error:
        announce_release_failure(settings, model, version, error, step=None, origin=origin, run=None)
        return Ended.failed(f"release of {model} v{version}", error)
    finally:
        store.close()
    announce_release(
        settings, model, version, actor=actor, summary=result.summary, previous_version=result.previous_version,
        origin=origin, run=None,
    )
    return Ended(text=result.summary)


def canary_apart(settings: Settings, actor: str, origin: ClickedMessage, parameters: dict[str, Any]) -> Ended:
    """A canary release's steps without Prefect (``tasks.release.canary_version``), as
    :func:`release_apart`; the clicked message then shows "soaking until …"."""
    from tasks.release import canary_version

    model, version = parameters["model"], parameters["version"]
    store = RegistryStore.open(settings.registry_url)
    try:
        result = canary_version(
            store, settings, model, version, actor=actor, reason=parameters["reason"],
            authorization=parameters.get("authorization"),
        )
    except Exception as error:
        announce_release_failure(settings, model, version, error, step=None, origin=origin, run=None)
        return Ended.failed(f"canary release of {model} v{version}", error)
    finally:
        store.close()
    announce_canary_started(settings, result, origin=origin, run=None)
    return Ended(text=result.summary)


def flow_apart(load_flow: Callable[[], Any], parameters: dict[str, Any], what: str) -> Ended:
    """The flow ``load_flow()`` run with ``parameters`` against the Prefect server of the
    environment; it reports in Slack itself (its end and its failure hooks)."""
    state = asyncio.run(load_flow()(**parameters, return_state=True))
    run_id = str(state.state_details.flow_run_id) if state.state_details.flow_run_id else None
    if state.is_completed():
        return Ended(text=f"{what} ran in a separate process: {state.message or state.name}", run_id=run_id)
    error = state.result(raise_on_failure=False)
    if isinstance(error, BaseException):
        return Ended.failed(what, error, run_id)
    return Ended(text=f"{what} ended {state.name}: {state.message}", run_id=run_id, error=f"{state.name}: {state.message}")
