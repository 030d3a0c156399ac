"""The serving switch: make TF Serving serve what the registry says, and undo it on refusal.

``models.config`` (see :mod:`tasks.serving_config`) is written atomically and, when TF Serving's
gRPC address is configured, pushed and verified (see :mod:`tasks.serving_reload`). A switch
changes one model's entry only, under that model's own lock, by compare-and-swap on the
file's content: switches of different models run side by side, on any machines sharing the
file, and one model's broken version never holds up another's release or rollback.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from registry.lifecycle import CANARY, HAS_FILES, PREVIOUS, PRODUCTION
from tasks.serving_config import (
    ServedModel,
    ServingConfigError,
    read_config_text,
    render_config,
    served_model,
    write_config,
)
from tasks.serving_reload import staged_models

if TYPE_CHECKING:
    from core.settings import Settings
    from registry.leases import Lease
    from registry.store import RegistryStore

CONFIG_LOCK = "*models.config*"
"""The registry lease held for the compare-and-swap of ``models.config`` (one file for every
model): only for re-reading, comparing and renaming it, never while TF Serving loads."""
SWAP_ATTEMPTS = 20
"""How often :func:`swap_entry` starts again when other switches keep changing the file."""


def served_models(
    store: RegistryStore, model_store: Path, base_paths: Mapping[str, str] | None = None
) -> list[ServedModel]:
    """What TF Serving should serve according to the registry (base paths as
    :func:`tasks.serving_config.served_model` sets them from ``base_paths``).

    Each model with a production version is served with it, with the ``previous`` version when
    its files still exist, and with its ``canary`` while one soaks. Models with no production
    version are left out.
    """
    served: dict[str, ServedModel] = {}
    for model in store.list_models():
        production = store.get_alias(model, PRODUCTION)
        if production is None:
            continue
        previous = store.get_alias(model, PREVIOUS)
        keep = previous.version if previous is not None and previous.status in HAS_FILES else None
        canary = store.get_alias(model, CANARY)
        served[model] = served_model(
            model, model_store, production.version, keep, canary.version if canary else None, base_paths=base_paths
        )
    return [served[name] for name in sorted(served)]


def sync_serving_config(
    store: RegistryStore, model_store: Path, path: Path, base_paths: Mapping[str, str] | None = None
) -> str:
    """Rewrite ``path`` so that it follows the registry; returns the text written."""
    return write_config(path, served_models(store, model_store, base_paths))


def switch_serving(
    path: Path,
    model: str,
    served: ServedModel,
    *,
    grpc_address: str | None,
    timeout_seconds: float,
    critical_section: Callable[[], AbstractContextManager[object]],
    ensure_held: Callable[[], None] = lambda: None,
) -> Callable[[], None]:
    """Make TF Serving serve ``served`` for ``model``, leaving every other model's entry as it is:
    swap ``model``'s entry in ``path`` (:func:`swap_entry`) and, when ``grpc_address`` is set,
    push the config and wait until ``model``'s versions are AVAILABLE (only this model's: a
    version of another model that fails to load does not hold this one up).

    With gRPC the entry is swapped in two steps, as TF Serving's label rule asks (see
    :mod:`tasks.serving_reload`): first the new versions beside the old ones with the labels
    unmoved (pushed, waited for), then ``served`` itself. So the file never puts a label on a
    version that is not AVAILABLE yet, and another model's switch, which pushes the whole file,
    can push it at any moment.

    Returns:
        ``undo()``, which puts ``model``'s previous entry back (and, with gRPC, pushes that):
        the caller calls it when the registry then refuses the change.

    Raises:
        ServingReloadError: TF Serving refused the config, failed to load a version of
            ``model``, or timed out; ``model``'s previous entry is restored (in the file and
            the server, other models' entries as they are now) before this is raised.
        ServingConfigError: ``served`` is not a valid entry, or the current file cannot be
            parsed; nothing was changed.
        registry.errors.LeaseLost: ``ensure_held`` found the caller's lease lost; nothing more
            was written.
    """
    render_config([served])  # refuse an invalid entry before touching anything

    def swap(entry: ServedModel | None) -> tuple[ServedModel | None, list[ServedModel], list[ServedModel]]:
        return swap_entry(path, model, entry, critical_section=critical_section, ensure_held=ensure_held)

    def push(models: list[ServedModel], previous: list[ServedModel], restore_entry: ServedModel | None) -> None:
        from tasks.serving_reload import push_config

        push_config(
            grpc_address, models, previous, timeout_seconds=timeout_seconds, wait_for={model},
            restore_to=lambda: swap_entry(path, model, restore_entry, critical_section=critical_section)[2],
        )

    if not grpc_address:
        old, _, _ = swap(served)

        def put_back() -> None:
            swap(old)

        return put_back
    current = next((entry for entry in read_config_text(read_text_or_none(path) or "") if entry.name == model), None)
    staged = staged_models([served], [current] if current else [])[0]
    old, before, after = swap(staged)
    push(after, before, old)
    _, before, after = swap(served)
    push(after, before, old)

    def undo() -> None:
        _, now, restored = swap(old)
        push(restored, now, old)

    return undo


def swap_entry(
    path: Path,
    model: str,
    entry: ServedModel | None,
    *,
    critical_section: Callable[[], AbstractContextManager[object]],
    ensure_held: Callable[[], None] = lambda: None,
) -> tuple[ServedModel | None, list[ServedModel], list[ServedModel]]:
    """Replace ``model``'s entry in ``path`` by ``entry`` (None: remove it), compare-and-swap.

    Reads the file and builds the new text outside any lock; then, inside
    ``critical_section()`` (a short registry lease, :data:`CONFIG_LOCK`, held for the compare and
    the rename only), re-reads the file and writes the new one atomically only if its sha256 is
    still the one read, retrying from the read (up to :data:`SWAP_ATTEMPTS` times) when another
    model's switch changed it meanwhile. ``ensure_held`` is called right before the write.

    Returns:
        (``model``'s entry before, every entry before, every entry after), entries sorted by name.

    Raises:
        ServingConfigError: the file cannot be parsed, ``entry`` is invalid, or the file kept
            changing for :data:`SWAP_ATTEMPTS` attempts; nothing was written.
        Whatever ``critical_section`` or ``ensure_held`` raise (``ModelLocked``, ``LeaseLost``).
    """
    for _ in range(SWAP_ATTEMPTS):
        text = read_text_or_none(path)
        before = read_config_text(text) if text else []
        old = next((served for served in before if served.name == model), None)
        after = sorted([served for served in before if served.name != model] + ([entry] if entry else []), key=lambda m: m.name)
        with critical_section():
            if _digest(read_text_or_none(path)) != _digest(text):
                continue  # another model's switch wrote it since the read: start again from its version
            ensure_held()
            write_config(path, after)
        return old, before, after
    raise ServingConfigError(f"{path}: it changed under every one of {SWAP_ATTEMPTS} attempts to switch {model}; try again")


def read_text_or_none(path: Path) -> str | None:
    """The text of ``path``, or None when it does not exist."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _digest(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


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
    lease: Lease | None = None,
) -> None:
    """Point TF Serving at ``served`` for ``model``, then ``record()`` the change in the registry;
    if ``record`` raises, serving is switched back before the error propagates.

    The one path of every release and rollback. The caller holds ``model``'s own lock (``lease``,
    checked right before each write) and has checked the change; only ``model``'s entry of
    ``models.config`` changes, by compare-and-swap (:func:`swap_entry`), so switches of other
    models run beside this one and neither writes back the other's old entry.

    Raises:
        registry.errors.ModelLocked: another switch held the short models.config lease too long.
        registry.errors.LeaseLost: ``lease`` was lost before a write; nothing more was written.
        tasks.serving_reload.ServingReloadError: TF Serving refused or failed to load; config restored.
        tasks.serving_config.ServingConfigError: ``served`` is not a valid config; nothing changed.
        Whatever ``record`` raises; serving was switched back.
    """
    ensure_held = lease.ensure_held if lease is not None else (lambda: None)
    undo = switch_serving(
        settings.serving_config_path,
        model,
        served,
        grpc_address=settings.serving.grpc_address,
        timeout_seconds=settings.serving.reload_timeout_seconds,
        critical_section=lambda: store.model_lock(
            CONFIG_LOCK, holder=holder, purpose=purpose, wait_seconds=30, lease_seconds=30
        ),
        ensure_held=ensure_held,
    )
    try:
        ensure_held()
        record()
    except BaseException:
        undo()
        raise
