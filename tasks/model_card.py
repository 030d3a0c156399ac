"""Model card and changelog: the registry's record of a version, kept beside its files.

- ``<model_store>/<model>/<N>/assets.extra/model_card.json``: the version's registry row
  (metrics, hyperparameters, data, lineage, baseline, decision), so a SavedModel copied
  anywhere still says what it is. TF Serving reads only ``tf_serving_warmup_requests`` from
  ``assets.extra`` and ignores this file; it is outside ``saved_model.pb``, so the checksum
  the registry holds does not change.
- ``<model_store>/<model>/CHANGELOG.md``: one entry per version, **newest first**, for a
  person reading the model store. Its writers (a nightly on one worker, an approval from a
  laptop) take turns through the registry lease ``changelog:<model>``, not a file lock, so
  that they exclude each other whichever machine they run on.

Rendering is pure (``model_card``, ``render_changelog_entry``, ``merge_changelog``); the
writers only add the atomic file handling. Plain module (no TensorFlow, no Prefect).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from core.files import write_text_atomically
from registry.models import ModelVersionRecord
from registry.store import RegistryStore
from tasks.comparison import PairedComparison, compare
from tasks.export import version_dir

logger = logging.getLogger(__name__)

CARD_SCHEMA = 1
CHANGELOG = "CHANGELOG.md"
CHANGELOG_LEASE_PREFIX = "changelog:"
"""Prefix of the registry lease its writers hold while they read and replace a model's CHANGELOG.md."""
_ENTRY_MARK = "<!-- tfrelease:version={version} -->"
_ENTRY_START = re.compile(r"^<!-- tfrelease:version=(\d+) -->$", re.MULTILINE)
_BATCHES_SHOWN = 5
_FINGERPRINT_SHOWN = 12
_PER_EXAMPLE = ("predictions", "labels")


# -- model card -----------------------------------------------------------------------------


def model_card(record: ModelVersionRecord) -> dict[str, Any]:
    """The card of ``record`` as a JSON-ready dict (timestamps ISO 8601 UTC).

    ``status`` is the registry status when the card was written; the registry stays the
    authority on the current one. The per-example ``predictions`` and ``labels`` of the
    metrics (int [examples] each) stay in the registry only; the decision keeps the paired
    tests read from them (``decision.paired``: each change with its interval and p-value).
    """
    row = record.model_dump(mode="json")
    return {
        "schema": CARD_SCHEMA,
        "model": row["model_name"],
        "version": row["version"],
        "status": row["status"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "saved_model_sha256": row["saved_model_sha256"],
        "metrics": _without_examples(row["metrics"]),
        "hyperparameters": row["hyperparameters"],
        "data": {"fingerprint": row["data_fingerprint"], "batches": row["batches"]},
        "baseline": {"version": row["baseline_version"], "metrics": _without_examples(row["baseline_metrics"])},
        "decision": row["decision"],
        "lineage": {
            "git_commit": row["git_commit"],
            "python_version": row["python_version"],
            "tensorflow_version": row["tensorflow_version"],
            "keras_version": row["keras_version"],
            "flow_run_id": row["flow_run_id"],
        },
    }


def _without_examples(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """``metrics`` without its per-example lists (a few bytes per held-out example each)."""
    if metrics is None:
        return None
    return {key: value for key, value in metrics.items() if key not in _PER_EXAMPLE}


def write_model_card(version_dir: Path, record: ModelVersionRecord) -> Path:
    """Write (or replace) ``<version_dir>/assets.extra/model_card.json`` atomically.

    Side effects: creates ``assets.extra`` if needed; a temporary file in it is renamed over
    the card, so a reader sees the old card or the new one, never half of one.

    Returns:
        The card's path.

    Raises:
        FileNotFoundError: ``version_dir`` does not exist (a card is never written for a
            version whose folder is gone; that would create a numbered folder TF Serving
            might try to load).
        OSError: the file could not be written; no partial card is left.
    """
    if not version_dir.is_dir():
        raise FileNotFoundError(f"{version_dir} is not a version folder")
    card = version_dir / "assets.extra" / "model_card.json"
    card.parent.mkdir(exist_ok=True)
    write_text_atomically(card, json.dumps(model_card(record), indent=2, sort_keys=False) + "\n")
    return card


# -- changelog ------------------------------------------------------------------------------


def render_changelog_entry(record: ModelVersionRecord, actor: str) -> str:
    """The Markdown entry of one version (ends with a newline).

    Says: the version's date (UTC), its data (batch count and names, fingerprint prefix),
    accuracy, loss and macro F1 with their change against the baseline version (accuracy's
    in points with its interval, ``+0.56 points, 95 % CI -0.8 to +1.9``, when the decision
    tested it), and the decision (outcome, reasons), its current status and ``actor`` (who
    made it).
    """
    lines = [
        _ENTRY_MARK.format(version=record.version),
        f"## Version {record.version} ({record.created_at.date().isoformat()})",
        "",
        f"- **Data:** {_data_line(record)}",
        f"- **Metrics:** {_metrics_line(record)}",
        f"- **Decision:** {_decision_line(record, actor)}",
    ]
    reasons = (record.decision or {}).get("reasons") or []
    lines += [f"  - {reason}" for reason in reasons]
    lines.append("")
    return "\n".join(lines) + "\n"


def merge_changelog(existing: str | None, model: str, version: int, entry: str) -> str:
    """``existing`` changelog text with ``entry`` for ``version`` in place, newest first.

    An entry already there for ``version`` is replaced (so appending again after the
    decision updates it); entries are ordered by version, descending. Text before the first
    entry (the title) is kept, or written when ``existing`` is None or empty.
    """
    header = f"# Changelog of model {model}\n\nNewest version first; written by tfrelease from the registry.\n\n"
    entries: dict[int, str] = {}
    if existing:
        starts = list(_ENTRY_START.finditer(existing))
        header = existing[: starts[0].start()] if starts else existing.rstrip("\n") + "\n\n"
        for index, start in enumerate(starts):
            end = starts[index + 1].start() if index + 1 < len(starts) else len(existing)
            entries[int(start.group(1))] = existing[start.start() : end].rstrip("\n") + "\n\n"
    entries[version] = entry.rstrip("\n") + "\n\n"
    body = "".join(entries[v] for v in sorted(entries, reverse=True))
    return (header + body).rstrip("\n") + "\n"


def append_changelog(store: RegistryStore, model_dir: Path, record: ModelVersionRecord, actor: str) -> Path:
    """Add (or update) ``record``'s entry in ``<model_dir>/CHANGELOG.md``.

    Side effects: creates ``model_dir`` if needed; holds the registry lease
    ``changelog:<model>`` (:meth:`registry.store.RegistryStore.model_lock`, waiting up to
    60 s for another writer) while it reads and replaces the file, so that a nightly run and
    an approval, on any machines sharing the model store, do not lose each other's entry; the
    file is replaced atomically, right after checking that the lease is still held.

    Returns:
        The changelog's path.

    Raises:
        ValueError: ``actor`` is empty.
        OSError: the file could not be read or written; the old changelog is left as it was.
        registry.errors.ModelLocked: another writer held the lease for over 60 s.
        registry.errors.LeaseLost: the lease was lost before the write; nothing was written.
    """
    if not actor.strip():
        raise ValueError("append_changelog: actor must be a non-empty string")
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / CHANGELOG
    entry = render_changelog_entry(record, actor)
    name = f"{CHANGELOG_LEASE_PREFIX}{record.model_name}"
    with store.model_lock(name, holder=actor, purpose=f"changelog entry of version {record.version}") as lease:
        existing = path.read_text() if path.exists() else None
        merged = merge_changelog(existing, record.model_name, record.version, entry)
        lease.ensure_held()
        write_text_atomically(path, merged)
    return path


def _data_line(record: ModelVersionRecord) -> str:
    batches = record.batches
    shown = ", ".join(batches[:_BATCHES_SHOWN])
    if len(batches) > _BATCHES_SHOWN:
        shown += f" and {len(batches) - _BATCHES_SHOWN} more"
    count = f"{len(batches)} batch{'es' if len(batches) != 1 else ''}" + (f" ({shown})" if batches else "")
    if record.data_fingerprint:
        return f"{count}, fingerprint `{record.data_fingerprint[:_FINGERPRINT_SHOWN]}`"
    return f"{count}, no fingerprint"


def _metrics_line(record: ModelVersionRecord) -> str:
    recorded = (record.decision or {}).get("paired")
    paired = PairedComparison.model_validate(recorded) if recorded else None
    parts = []
    for figure in compare(record.metrics, record.baseline_metrics).summary:
        if figure.candidate is None:
            parts.append(f"{figure.label} n/a")
            continue
        text = f"{figure.label} {figure.candidate:.4f}"
        test = paired.test_of(figure) if paired is not None else None
        if test is not None:
            text += f" ({test.describe()})"
        elif figure.change is not None:
            text += f" ({figure.change:+.4f})"
        parts.append(text)
    if record.baseline_version is None or record.baseline_metrics is None:
        against = "no baseline (no production version to compare with)"
    else:
        against = f"changes against version {record.baseline_version}"
    return f"{', '.join(parts)}; {against}"


def _decision_line(record: ModelVersionRecord, actor: str) -> str:
    outcome = (record.decision or {}).get("outcome")
    decided = f"`{outcome}`" if outcome else "none recorded yet"
    return f"{decided}; status `{record.status.value}`, by {actor}"


def document_version(store: RegistryStore, model_store: Path, model: str, version: int, *, actor: str) -> None:
    """Refresh the version's ``assets.extra/model_card.json`` and the model's CHANGELOG.md.

    Both are copies of the registry for people; a failure to write them is logged as a
    warning and never undoes or fails the decision already recorded.
    """
    record = store.get_version(model, version)
    try:
        write_model_card(version_dir(model_store, model, version), record)
        append_changelog(store, model_store / model, record, actor=actor)
    except OSError as error:
        logger.warning("could not write the model card or changelog of %s version %s: %s", model, version, error)
