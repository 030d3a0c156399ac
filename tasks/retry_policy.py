"""Which task failures are worth retrying: transient ones only (an allow-list).

Bad data, a damaged SavedModel, a refused transition or a timed-out task fail the same way
again, so they are never retried; a locked model, a busy database, an unreachable server are.
"""

from __future__ import annotations

import errno
from typing import Any

_PERMANENT_OS_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
_TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EBUSY, errno.EIO, errno.ESTALE, errno.ETIMEDOUT, errno.EINTR}


def is_transient(error: BaseException) -> bool:
    """True for errors that a later attempt may not meet (locks, connections, busy files)."""
    from prefect.task_engine import TaskRunTimeoutError

    from registry.errors import ModelLocked, VersionConflict
    from tasks.serving_reload import ServingReloadError

    if isinstance(error, TaskRunTimeoutError):  # a TimeoutError, hence an OSError: test it first
        return False
    if isinstance(error, (ModelLocked, VersionConflict)):
        return True
    if isinstance(error, ServingReloadError):  # only when nothing changed and the server was away or slow
        return error.restored and ("UNAVAILABLE" in error.reason or "timed out" in error.reason)
    if isinstance(error, ConnectionError):
        return True
    if isinstance(error, OSError) and not isinstance(error, _PERMANENT_OS_ERRORS):
        return error.errno in _TRANSIENT_ERRNOS or isinstance(error, TimeoutError)
    import httpx
    from sqlalchemy.exc import OperationalError

    return isinstance(error, (OperationalError, httpx.TransportError))


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the failure is transient."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, BaseException) and is_transient(error)
