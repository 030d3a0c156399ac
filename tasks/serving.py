"""The serving switch: make TF Serving serve what the registry says, and undo it on refusal.

``models.config`` (see :mod:`tasks.serving_config`) is written atomically and, when TF Serving's
gRPC address is configured, pushed and verified (see :mod:`tasks.serving_reload`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from registry.lifecycle import CANARY, HAS_FILES, PREVIOUS, PRODUCTION
from tasks.serving_config import (
    ServedModel,
    read_config_text,
    render_config,
    restore_config,
    served_model,
    write_config,
)

if TYPE_CHECKING:
    from core.settings import Settings
    from registry.store import RegistryStore

# models.config is one file for every model: its writers also hold this registry lock, so
# that switching one model never writes back another model's old version.
CONFIG_LOCK = "*models.config*"


def served_models(
    store: RegistryStore, model_store: Path, overrides: dict[str, ServedModel] | None = None
) -> list[ServedModel]:
    """What TF Serving should serve according to the registry, with ``overrides`` replacing
    the entries of the models being switched right now.

    Each model with a production version is served with it, with the ``previous`` version when
    its files still exist, and with its ``canary`` while one soaks. Models with no production
    version are left out.
    """
    served = dict(overrides or {})
    for model in store.list_models():
        if model in served:
            continue
        production = store.get_alias(model, PRODUCTION)
        if production is None:
            continue
        previous = store.get_alias(model, PREVIOUS)
        keep = previous.version if previous is not None and previous.status in HAS_FILES else None
        canary = store.get_alias(model, CANARY)
        served[model] = served_model(model, model_store, production.version, keep, canary.version if canary else None)
    return [served[name] for name in sorted(served)]


def sync_serving_config(store: RegistryStore, model_store: Path, path: Path) -> str:
    """Rewrite ``path`` so that it follows the registry; returns the text written."""
    return write_config(path, served_models(store, model_store))


def switch_serving(
    path: Path, models: list[ServedModel], *, grpc_address: str | None, timeout_seconds: float
) -> Callable[[], None]:
    """Make TF Serving serve ``models``: write ``path`` atomically and, when ``grpc_address``
    is set, push the config and wait until every new version is AVAILABLE.

    Returns:
        ``undo()``, which puts the previous file (and, with gRPC, the previous config) back:
        the caller calls it when the registry then refuses the change.

    Raises:
        ServingReloadError: TF Serving refused the config, failed to load a version, or timed
            out; the previous file (and server config) is restored before this is raised.
        ServingConfigError: ``models`` is not a valid config, or, with gRPC, the current file
            cannot be parsed to restore it later; nothing was changed.
    """
    previous_text = path.read_text() if path.exists() else None
    render_config(models)  # refuse an invalid config before touching anything
    previous = read_config_text(previous_text) if grpc_address and previous_text else []
    write_config(path, models)

    def undo() -> None:
        restore_config(path, previous_text)
        if grpc_address:
            from tasks.serving_reload import push_config

            push_config(grpc_address, previous, models, timeout_seconds=timeout_seconds)

    if grpc_address:
        try:
            from tasks.serving_reload import push_config

            push_config(grpc_address, models, previous, timeout_seconds=timeout_seconds)
        except BaseException:
            restore_config(path, previous_text)
            raise
    return undo


def lock_holder(actor: str, flow_run_id: str | None) -> str:
    """How a registry lock names its holder: the actor, and the flow run when there is one."""
    return f"{actor} (flow run {flow_run_id})" if flow_run_id else actor


def switch_and_record(
    store: RegistryStore,
    settings: Settings,
    model: str,
    served: ServedModel,
    record: Callable[[], object],
    *,
    holder: str,
    purpose: str,
) -> None:
    """Point TF Serving at ``served`` for ``model``, then ``record()`` the change in the registry;
    if ``record`` raises, serving is switched back before the error propagates.

    The one path of every release and rollback. The caller holds ``model``'s own lock and has
    checked the change; this takes the ``models.config`` lock (:data:`CONFIG_LOCK`), which every
    writer of that file holds, so that switching one model never writes back another's old version.

    Raises:
        registry.errors.ModelLocked: another switch held the models.config lock too long.
        tasks.serving_reload.ServingReloadError: TF Serving refused or failed to load; config restored.
        tasks.serving_config.ServingConfigError: ``served`` is not a valid config; nothing changed.
        Whatever ``record`` raises; serving was switched back.
    """
    with store.model_lock(CONFIG_LOCK, holder=holder, purpose=purpose):
        undo = switch_serving(
            settings.serving_config_path,
            served_models(store, settings.model_store, {model: served}),
            grpc_address=settings.serving.grpc_address,
            timeout_seconds=settings.serving.reload_timeout_seconds,
        )
        try:
            record()
        except BaseException:
            undo()
            raise
