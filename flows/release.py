"""The release: a human (or Slack) puts a registered version into production."""

from __future__ import annotations

from prefect import flow, runtime

from registry.store import RegistryStore
from tasks.release import check_release_task, smoke_test_task, switch_to_version_task
from tfrelease.settings import get_settings


@flow(name="release", log_prints=True)
async def release(model: str, version: int, actor: str, reason: str, force: bool = False) -> str:
    """Release ``version`` of ``model``: check it, smoke-test it, switch serving, record it.

    Allowed from registered, pending_approval (a human release counts as the approval),
    approved and earlier production states; a rejected version only with ``force`` and a
    reason (logged as force_released). Fails, changing nothing, when any step refuses.
    """
    settings = get_settings()
    store = RegistryStore.open(settings.registry_url)
    flow_run_id = str(runtime.flow_run.id) if runtime.flow_run.id else None

    # 1. The version may be released and its files are the ones that were evaluated.
    candidate = check_release_task(store, model, version, force=force)

    # 2. It loads as TF Serving would load it and scores what was recorded.
    metrics = smoke_test_task(settings, candidate)

    # 3. Serving switches to it, then the registry records the promotion (under the model's lock).
    switch_to_version_task(store, settings, model, version, actor=actor, reason=reason, force=force, flow_run_id=flow_run_id)

    summary = f"{model} version {version} released to production by {actor} (held-out accuracy {metrics.accuracy:.4f})"
    print(summary)
    return summary
