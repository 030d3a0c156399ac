"""Serving-config drift: TF Serving's ``models.config`` checked against what the registry serves.

The registry says what each model should serve (``tasks.serving.served_models``: production,
and ``previous`` while its files exist); the file says what TF Serving loads. A difference is
repaired by rewriting the whole file from the registry, which is safe only when every version
the registry would serve has an intact folder. Reads only; changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from registry.store import RegistryStore
from tasks.drift import Drift, DriftKind, RepairAction
from tasks.serving import served_models
from tasks.serving_config import ServedModel, ServingConfigError, read_config


def check_serving_config(
    store: RegistryStore,
    model_store: Path,
    config_path: Path,
    known: set[str],
    intact: dict[tuple[str, int], bool],
) -> list[Drift]:
    """Every difference between ``config_path`` and what the registry would serve.

    Args:
        store: the registry.
        model_store: the folder holding ``<model>/<version>`` folders (the served base paths).
        config_path: TF Serving's ``models.config``.
        known: every model the registry knows; an entry of any other model is left for a
            human (the registry URL may be wrong).
        intact: ``(model, version) -> folder present and checksums match``, as filled in by
            ``tasks.model_store_drift.check_model_folders``; a version missing from it counts
            as not intact.

    Returns:
        One drift per model whose entry differs (model order), or a single drift about model
        ``"*"`` when the file cannot be read. The file is rewritten as a whole, so when one
        entry cannot be rewritten safely none of them is marked safe.

    Raises:
        sqlalchemy.exc.OperationalError: the registry cannot be reached.
        OSError: ``config_path`` exists but cannot be read.
    """
    expected = {m.name: m for m in served_models(store, model_store)}
    try:
        actual = {m.name: m for m in read_config(config_path)}
    except ServingConfigError as error:
        blocked = sorted(
            f"{m.name} v{v}" for m in expected.values() for v in m.versions if not intact.get((m.name, v), False)
        )
        return [
            Drift(
                DriftKind.SERVING_CONFIG,
                "*",
                None,
                f"{config_path} is unreadable: {error}",
                f"rewrite it from the registry (sync_serving_config) once {', '.join(blocked)} are intact"
                if blocked
                else "rewrite it from the registry (sync_serving_config)",
                safe=not blocked,
                action=RepairAction.NONE if blocked else RepairAction.SYNC_SERVING_CONFIG,
                path=config_path,
            )
        ]

    found: list[tuple[str, str, str | None]] = []  # (model, description, why unsafe or None)
    for model in sorted(set(expected) | set(actual)):
        want, have = expected.get(model), actual.get(model)
        if _same(want, have):
            continue
        description = f"{config_path.name} has {_entry(have)}; the registry says {_entry(want)}"
        if want is None:
            unsafe = None if model in known else "the registry does not know this model: check the registry URL"
        else:
            broken = [v for v in want.versions if not intact.get((model, v), False)]
            unsafe = (
                f"the registry's version(s) {', '.join(map(str, broken))} have no intact folder: "
                "fix the files first (re-release or roll back)"
                if broken
                else None
            )
        found.append((model, description, unsafe))

    # The file is rewritten as a whole: one entry that cannot be written blocks every other.
    blockers = [model for model, _, unsafe in found if unsafe]
    drifts = []
    for model, description, unsafe in found:
        want = expected.get(model)
        if unsafe:
            proposal, safe = f"leave it: {unsafe}", False
        elif blockers:
            proposal, safe = f"rewrite it from the registry once {', '.join(blockers)} can be rewritten too", False
        else:
            proposal, safe = "rewrite models.config from the registry (sync_serving_config)", True
        drifts.append(
            Drift(
                DriftKind.SERVING_CONFIG,
                model,
                want.labels.get("stable") if want else None,
                description,
                proposal,
                safe=safe,
                action=RepairAction.SYNC_SERVING_CONFIG if safe else RepairAction.NONE,
                path=config_path,
            )
        )
    return drifts


def _same(want: ServedModel | None, have: ServedModel | None) -> bool:
    """Whether two entries serve the same versions, labels and base path (None: no entry)."""
    if want is None or have is None:
        return want is have
    return (
        str(want.base_path) == str(have.base_path)
        and sorted(want.versions) == sorted(have.versions)
        and want.labels == have.labels
    )


def _entry(served: ServedModel | None) -> str:
    """An entry for a person: versions, labels and base path."""
    if served is None:
        return "no entry"
    labels = ", ".join(f"{label}->{version}" for label, version in sorted(served.labels.items()))
    return f"versions {list(served.versions)} ({labels or 'no labels'}) at {served.base_path}"
