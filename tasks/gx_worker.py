"""Great Expectations in a process of its own: the validation worker.

Importing ``great_expectations`` costs 5-9 s of CPU, and validating digits' 198 expectations
about 1-2 s more: a night runs both in one helper process, so that on two or more cores they
run while the night's own process imports Prefect and TensorFlow (measured whole-process in
``benchmarks/nightly_overhead.py``). The worker is a fresh interpreter (``python -c``, never a
fork: forking a process that runs TensorFlow's and Prefect's threads is unsafe, and
multiprocessing's spawn would re-run the caller's main script) that talks over a socket pair
with pickled jobs. It is started by :func:`start` (a command about to run a night) or by the
first :func:`call`, and lives as long as this process, however it ends: stopped by an exit
hook, or, when this process was killed, on reading end-of-file from its socket (once its
import or job is done). One job at a time: callers on several threads take turns. POSIX only
(the socket is passed as an inherited descriptor).

This module imports neither Prefect nor GX at module level, so the worker's start-up imports
only it and GX.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pandas as pd

T = TypeVar("T")

FAILURE_RESULT_FORMAT = "SUMMARY"  # observed values, unexpected counts and up to 20 example values


class SuiteError(Exception):
    """An expectation suite file is missing, is not valid JSON, or GX refuses its contents."""


class WorkerDied(RuntimeError):
    """The validation worker ended (killed, out of memory) before it answered."""


def start() -> None:
    """Start the worker now, if it is not running, without waiting: its GX import begins."""
    with _lock:
        _connection()


def validate(frame: pd.DataFrame, suite_data: dict[str, Any], suite_path: str, batch_name: str) -> dict[str, Any]:
    """Validate ``frame`` against the suite ``suite_data`` (a GX 1.x suite as JSON, read from
    ``suite_path``, which only names it in errors) in the worker.

    Args:
        frame: the batch, any shape and dtypes; sent to the worker pickled (a copy).
        batch_name: names the data asset, the validation definition and the run.

    Returns:
        GX's ``ExpectationSuiteValidationResult.to_json_dict()`` as plain JSON values, computed
        with result format ``BOOLEAN_ONLY`` when the batch passes and ``SUMMARY`` (observed
        values, unexpected counts, example values) when it fails.

    Raises:
        SuiteError: GX refuses the suite or drops an expectation of it.
        WorkerDied: the worker ended before it answered (the next call starts a new one).
    """
    return call(_validate_in_worker, frame, suite_data, suite_path, batch_name)


def call(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` run in the worker, where ``great_expectations`` is imported; its result.

    ``fn`` must be a module-level function and its arguments and result picklable.

    Raises:
        WorkerDied: the worker ended before it answered (the next call starts a new one).
        Whatever ``fn`` raises.
    """
    with _lock:
        connection = _connection()
        try:
            connection.send((fn, args))
            ok, value = connection.recv()
        except (EOFError, OSError) as error:
            code = _end_worker(grace_seconds=5)  # alive but not answering: it is of no more use
            raise WorkerDied(f"the Great Expectations worker process ended (exit code {code}) before it answered") from error
    if not ok:
        raise value
    return value


_lock = threading.Lock()  # one job at a time; guards _worker
_worker: tuple[subprocess.Popen[bytes], Connection] | None = None
_PROJECT_ROOT = Path(__file__).resolve().parent.parent  # where the worker imports this module from


def _connection() -> Connection:
    """The running worker's end of the socket pair, starting the worker first if needed. Hold ``_lock``."""
    global _worker
    if _worker is None:
        ours, theirs = socket.socketpair()
        with theirs:
            path = os.pathsep.join(filter(None, [str(_PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
            process = subprocess.Popen(
                [sys.executable, "-c", f"from tasks.gx_worker import serve; serve({theirs.fileno()})"],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=os.environ | {"PYTHONPATH": path},
            )
        _worker = process, Connection(ours.detach())
    return _worker[1]


def _end_worker(grace_seconds: float) -> int | None:
    """Close the worker's socket and reap it, killed if it has not exited after
    ``grace_seconds``; its exit code (None when none runs). Hold ``_lock``."""
    global _worker
    if _worker is None:
        return None
    process, connection = _worker
    _worker = None
    connection.close()
    try:
        return process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


@atexit.register
def _stop() -> None:
    """Stop the worker at once: with ``_lock`` held no job runs, so nothing is lost, and a
    worker still importing GX (a night that ended early) would read end-of-file only after
    that import."""
    with _lock:
        _end_worker(grace_seconds=0)


# --- in the worker -------------------------------------------------------------------------


def serve(fd: int) -> None:
    """The worker's life: import GX, then run each job received on ``fd`` and send back
    ``(True, result)`` or ``(False, exception)``, until the other end closes."""
    import great_expectations  # noqa: F401  (the 5-9 s, before the first job arrives)

    connection = Connection(fd)
    while True:
        reply: tuple[bool, Any]
        try:
            fn, args = connection.recv()
        except EOFError:
            os._exit(0)  # the caller is gone: no interpreter teardown for anyone to wait on
        except Exception as error:  # a job this side cannot unpickle
            reply = (False, error)
        else:
            try:
                reply = (True, fn(*args))
            except Exception as error:
                reply = (False, error)
        try:
            connection.send(reply)
        except OSError:
            os._exit(0)
        except Exception as unpicklable:  # the caller still gets an answer
            connection.send((False, RuntimeError(f"the GX worker could not send back {reply[1]!r}: {unpicklable}")))


def _validate_in_worker(frame: pd.DataFrame, suite_data: dict[str, Any], suite_path: str, batch_name: str) -> dict[str, Any]:
    from great_expectations.core.run_identifier import RunIdentifier

    context = _shared_context()
    suite = _registered_suite(context, suite_path, suite_data)
    with _validation_definition(context, suite, batch_name) as definition:
        # Most batches pass: a BOOLEAN_ONLY pass costs about a third of a SUMMARY one; the
        # details (observed values, unexpected counts) are computed only for a failing batch.
        def run(result_format: str):
            return definition.run(batch_parameters={"dataframe": frame}, result_format=result_format, run_id=RunIdentifier(run_name=batch_name))

        result = run("BOOLEAN_ONLY")
        if not result.success:
            result = run(FAILURE_RESULT_FORMAT)
    # A JSON round trip turns the numpy scalars GX leaves in to_json_dict() into plain floats
    # (GX's own Data Docs renderer chokes on numpy 2 scalars) and makes the result picklable.
    return json.loads(json.dumps(result.to_json_dict()))


_context: Any = None


def _shared_context() -> Any:
    """The worker's in-memory GX context, without progress bars or a temporary Data Docs site
    (built on the first job, about 0.1 s)."""
    global _context
    if _context is None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        )
        _context = gx.get_context(project_config=config, mode="ephemeral")
    return _context


# suite name -> (its JSON as registered, the suite in the shared context)
_registered_suites: dict[str, tuple[str, Any]] = {}
_DATA_SOURCE = "batches"  # the shared context's one pandas data source


def _registered_suite(context: Any, suite_path: str, suite_data: dict[str, Any]) -> Any:
    """The suite of ``suite_data`` in ``context``: built, checked and added on first use and
    kept (building and adding the 198 expectations of digits, then deleting them, cost about
    0.15 s a batch); replaced when a file of the same suite name has other contents.

    Raises:
        SuiteError: GX refuses the suite or drops an expectation of it.
    """
    import great_expectations as gx

    key = json.dumps(suite_data, sort_keys=True)
    cached = _registered_suites.get(suite_data["name"])
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        suite = gx.ExpectationSuite(**suite_data)
    except Exception as error:  # GX raises many types for an unknown key or bad kwargs
        raise SuiteError(f"expectation suite file {suite_path} is not a valid GX 1.x suite: {type(error).__name__}: {error}") from None
    # GX logs an invalid expectation (unknown type, bad kwargs) and drops it from the suite:
    # a typo must not silently weaken the contract.
    dropped = Counter(str(e.get("type")) for e in suite_data["expectations"]) - Counter(e.expectation_type for e in suite.expectations)
    if dropped:
        raise SuiteError(f"expectation suite file {suite_path} has invalid expectations GX refused: {', '.join(sorted(dropped.elements()))}")
    if cached is not None:
        _registered_suites.pop(suite_data["name"])
        context.suites.delete(suite_data["name"])
    suite = context.suites.add(suite)
    _registered_suites[suite.name] = (key, suite)
    return suite


@contextmanager
def _validation_definition(context: Any, suite: Any, batch_name: str) -> Iterator[Any]:
    """A validation definition of ``suite`` (already in ``context``) on a whole-dataframe batch.

    The data asset and the definition are named ``batch_name``, as in a context of their own,
    so results name them as before. On exit both and the stored validation results are removed
    again: names repeat from job to job and the context must not grow with every batch.
    """
    import great_expectations as gx

    with ExitStack() as added:
        added.callback(_forget_results, context)
        if _DATA_SOURCE in context.data_sources.all():
            source = context.data_sources.get(_DATA_SOURCE)
        else:
            source = context.data_sources.add_pandas(_DATA_SOURCE)
        asset = source.add_dataframe_asset(batch_name)
        added.callback(source.delete_asset, asset.name)
        batch_definition = asset.add_batch_definition_whole_dataframe("whole")
        definition = context.validation_definitions.add(gx.ValidationDefinition(name=batch_name, data=batch_definition, suite=suite))
        added.callback(context.validation_definitions.delete, definition.name)
        yield definition


def _forget_results(context: Any) -> None:
    store = context.validation_results_store
    for key in store.list_keys():
        store.remove_key(key)
