"""The model card (JSON beside the SavedModel) and the model's CHANGELOG.md."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.models import ModelVersionRecord, VersionStatus
from registry.store import RegistryStore
from tasks.model_card import (
    append_changelog,
    merge_changelog,
    model_card,
    render_changelog_entry,
    write_model_card,
)


def record(version: int = 2, **overrides: Any) -> ModelVersionRecord:
    """A registry read model as the store would hand it out, with every field set."""
    fields: dict[str, Any] = {
        "id": version,
        "model_name": "digits",
        "version": version,
        "status": VersionStatus.PRODUCTION,
        "created_at": datetime(2026, 11, 20 + version, 2, 30, tzinfo=UTC),
        "updated_at": datetime(2026, 11, 20 + version, 2, 31, tzinfo=UTC),
        "path": f"/models/digits/{version}",
        "saved_model_sha256": "ab" * 32,
        "metrics": {"accuracy": 0.9612, "loss": 0.1234, "macro_f1": 0.9598, "per_class_recall": [0.96] * 10, "examples": 360},
        "hyperparameters": {"hidden_units": [64], "epochs": 30, "learning_rate": 0.003},
        "data_fingerprint": "cd" * 32,
        "batches": ["digits-batch-0001.parquet", "digits-batch-0002.parquet"],
        "baseline_version": version - 1,
        "baseline_metrics": {"accuracy": 0.9500, "loss": 0.1500, "macro_f1": 0.9490},
        "decision": {"outcome": "promote", "reasons": ["accuracy 0.9612 meets the minimum 0.9000", "accuracy improves by +0.0112"]},
        "git_commit": "0123456789abcdef0123456789abcdef01234567",
        "python_version": "3.11.7",
        "tensorflow_version": "2.21.0",
        "keras_version": "3.15.0",
        "flow_run_id": "flow-run-7",
    }
    fields.update(overrides)
    return ModelVersionRecord(**fields)


# -- model card -----------------------------------------------------------------------------


def test_the_card_carries_the_registry_row(tmp_path: Path):
    version_dir = tmp_path / "digits" / "2"
    (version_dir / "variables").mkdir(parents=True)
    (version_dir / "saved_model.pb").write_bytes(b"pb")

    path = write_model_card(version_dir, record())
    assert path == version_dir / "assets.extra" / "model_card.json"
    card = json.loads(path.read_text())
    assert card["model"] == "digits" and card["version"] == 2 and card["status"] == "production"
    assert card["metrics"]["accuracy"] == 0.9612
    assert card["hyperparameters"]["hidden_units"] == [64]
    assert card["data"] == {"fingerprint": "cd" * 32, "batches": ["digits-batch-0001.parquet", "digits-batch-0002.parquet"]}
    assert card["baseline"] == {"version": 1, "metrics": {"accuracy": 0.95, "loss": 0.15, "macro_f1": 0.949}}
    assert card["decision"]["outcome"] == "promote"
    assert card["lineage"]["git_commit"].startswith("0123") and card["lineage"]["flow_run_id"] == "flow-run-7"
    assert card["saved_model_sha256"] == "ab" * 32
    assert datetime.fromisoformat(card["created_at"]) == datetime(2026, 11, 22, 2, 30, tzinfo=UTC)
    assert card == json.loads(json.dumps(model_card(record())))
    # The SavedModel itself is untouched, and no temporary file is left.
    assert (version_dir / "saved_model.pb").read_bytes() == b"pb"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model_card.json"]


def test_writing_again_replaces_the_card(tmp_path: Path):
    version_dir = tmp_path / "3"
    version_dir.mkdir()
    write_model_card(version_dir, record(3, status=VersionStatus.REGISTERED, decision=None))
    path = write_model_card(version_dir, record(3))
    assert json.loads(path.read_text())["decision"]["outcome"] == "promote"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model_card.json"]


def test_no_card_without_a_version_folder(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        write_model_card(tmp_path / "digits" / "9", record())
    assert not (tmp_path / "digits").exists()


# -- changelog ------------------------------------------------------------------------------


def test_an_entry_says_data_metric_deltas_and_decision():
    entry = render_changelog_entry(record(), actor="alice")
    assert "## Version 2 (2026-11-22)" in entry
    assert "2 batches (digits-batch-0001.parquet, digits-batch-0002.parquet), fingerprint `cdcdcdcdcdcd`" in entry
    assert "cd" * 7 not in entry  # only a prefix of the fingerprint
    assert "accuracy 0.9612 (+0.0112), loss 0.1234 (-0.0266), macro F1 0.9598 (+0.0108); changes against version 1" in entry
    assert "**Decision:** `promote`; status `production`, by alice" in entry
    assert "  - accuracy improves by +0.0112" in entry


def test_a_first_version_without_baseline_or_decision():
    entry = render_changelog_entry(
        record(1, baseline_version=None, baseline_metrics=None, decision=None, status=VersionStatus.REGISTERED,
               batches=[f"b{i}" for i in range(7)], metrics={"accuracy": 0.9}),
        actor="policy",
    )  # fmt: skip
    assert "accuracy 0.9000, loss n/a, macro F1 n/a; no baseline" in entry
    assert "7 batches (b0, b1, b2, b3, b4 and 2 more)" in entry
    assert "none recorded yet; status `registered`, by policy" in entry


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RegistryStore]:
    opened = RegistryStore.open(f"sqlite:///{tmp_path / 'registry.db'}")
    yield opened
    opened.close()


def test_the_changelog_is_newest_first_with_one_entry_per_version(tmp_path: Path, store):
    model_dir = tmp_path / "digits"
    append_changelog(store, model_dir, record(1, baseline_version=None, baseline_metrics=None), "policy")
    append_changelog(store, model_dir, record(3, status=VersionStatus.PENDING_APPROVAL, decision=None), "policy")
    path = append_changelog(store, model_dir, record(2), "policy")
    # Appending a version again (after its decision) updates its entry in place.
    decided = record(3, status=VersionStatus.APPROVED, decision={"outcome": "request_approval", "reasons": ["a tie"]})
    append_changelog(store, model_dir, decided, "bob")

    text = path.read_text()
    assert path == model_dir / "CHANGELOG.md"
    assert text.startswith("# Changelog of model digits\n")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == ["## Version 3 (2026-11-23)", "## Version 2 (2026-11-22)", "## Version 1 (2026-11-21)"]
    assert text.count("Version 3") == 1
    assert "`request_approval`; status `approved`, by bob\n  - a tie" in text
    assert not text.endswith("\n\n")
    assert sorted(p.name for p in model_dir.iterdir()) == ["CHANGELOG.md"]  # no lock file: the lease is in the registry
    assert store.list_locks() == []


def test_merge_keeps_a_hand_written_title():
    existing = "# Digits model\n\nOur notes.\n"
    merged = merge_changelog(existing, "digits", 1, render_changelog_entry(record(1), "policy"))
    assert merged.startswith("# Digits model\n\nOur notes.\n\n<!-- tfrelease:version=1 -->\n## Version 1")
    assert merge_changelog(merged, "digits", 1, render_changelog_entry(record(1), "policy")) == merged


def test_an_anonymous_actor_is_refused(tmp_path: Path, store):
    with pytest.raises(ValueError, match="actor"):
        append_changelog(store, tmp_path, record(), " ")


def test_a_changelog_writer_waits_for_another_writers_lease(tmp_path: Path, store):
    model_dir = tmp_path / "digits"
    with store.model_lock("changelog:digits", holder="other worker", purpose="changelog entry of version 1"):
        writer = threading.Thread(target=append_changelog, args=(store, model_dir, record(1), "policy"))
        writer.start()
        writer.join(1.0)
        assert writer.is_alive() and not (model_dir / "CHANGELOG.md").exists()  # waiting for the lease
    writer.join(10)
    assert "## Version 1" in (model_dir / "CHANGELOG.md").read_text()


def test_the_card_and_the_changelog_show_the_tested_change_with_its_interval(tmp_path: Path):
    from core.settings import ReleasePolicy
    from tasks.decide import decide
    from tests.unit.test_decide import PRODUCTION, candidate

    new = candidate(gained=10)
    decision = decide(new, PRODUCTION, ReleasePolicy())
    decided = record(
        metrics=new.model_dump(mode="json"),
        baseline_metrics=PRODUCTION.model_dump(mode="json"),
        decision=decision.model_dump(mode="json"),
    )
    interval = decision.paired.accuracy.describe()
    assert interval.startswith("+2.78 points, 95 % CI +")

    entry = render_changelog_entry(decided, actor="policy")
    assert f"accuracy {new.accuracy:.4f} ({interval}), loss" in entry
    assert f"  - accuracy {interval} (10 gained, 0 lost of 360 examples, McNemar exact p = 0.002)" in entry

    (tmp_path / "2").mkdir()
    card = json.loads(write_model_card(tmp_path / "2", decided).read_text())
    tested = card["decision"]["paired"]["accuracy"]
    assert (tested["gained"], tested["lost"], tested["confidence_level"]) == (10, 0, 0.95)
    assert tested["ci_low"] < tested["difference"] < tested["ci_high"]
    # The per-example lists stay in the registry; the card keeps the figures.
    for metrics in (card["metrics"], card["baseline"]["metrics"]):
        assert "predictions" not in metrics and "labels" not in metrics and metrics["examples"] == 360
