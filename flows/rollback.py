"""The rollback: put the previous production version back, fast, with no TensorFlow."""

from __future__ import annotations

from prefect import flow, runtime, task
from prefect.cache_policies import NO_CACHE

from registry.store import RegistryStore
from tasks.retry_policy import retry_if_transient
from tasks.rollback import RollbackResult, rollback_model
from tfrelease.settings import get_settings

rollback_model_task = task(
    rollback_model, name="rollback", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_if_transient
)


@flow(name="rollback", log_prints=True)
async def rollback(
    model: str, actor: str, reason: str, to_version: int | None = None, from_version: int | None = None
) -> RollbackResult:
    """Roll ``model`` back to ``to_version`` (default: the ``previous`` alias); with
    ``from_version``, only if that version is still production.

    The same steps as ``tfrelease rollback`` without a Prefect server: check the target was
    production and its files are intact, switch serving, record it (see tasks.rollback).
    """
    settings = get_settings()
    store = RegistryStore.open(settings.registry_url)
    flow_run_id = str(runtime.flow_run.id) if runtime.flow_run.id else None
    result = rollback_model_task(
        store, settings, model, actor=actor, reason=reason, to_version=to_version,
        expected_from=from_version, flow_run_id=flow_run_id,
    )
    print(f"{model} rolled back from version {result.from_version} to {result.to_version} by {actor}: {reason}")
    return result
