"""Only transient failures are retried."""

from __future__ import annotations

import errno

import pytest
from prefect.task_engine import TaskRunTimeoutError
from sqlalchemy.exc import OperationalError

from registry.errors import IllegalTransition, ModelLocked
from tasks.integrity import VersionFilesError
from tasks.retry_policy import is_transient
from tasks.serving_reload import ServingReloadError
from tasks.validate import DataValidationError


@pytest.mark.parametrize(
    "error",
    [
        ModelLocked("digits", "cli:alice", "release", "now", 60),
        ConnectionError("reset by peer"),
        OSError(errno.EBUSY, "busy"),
        OperationalError("SELECT 1", {}, Exception("database is locked")),
        ServingReloadError("127.0.0.1:8500", "UNAVAILABLE: connection refused", restored=True),
    ],
)
def test_transient_failures_are_retried(error):
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        DataValidationError("batch broke the contract"),
        VersionFilesError("digits version 3: saved_model.pb changed"),
        IllegalTransition("digits", 3, "rejected", "production"),
        FileNotFoundError("gone"),
        TaskRunTimeoutError("took too long"),
        ServingReloadError("127.0.0.1:8500", "Failed to load servable", restored=True),
        ValueError("bad input"),
    ],
)
def test_permanent_failures_are_not_retried(error):
    assert not is_transient(error)
