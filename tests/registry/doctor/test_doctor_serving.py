"""The doctor and models.config: a missing, stale, unsafe or unreadable config follows the registry,
and a model the registry does not know is never unloaded."""
from __future__ import annotations

from tasks.doctor import repair
from tasks.drift import DriftKind, RepairAction
from tasks.serving import served_models
from tasks.serving_config import ServedModel, read_config, write_config
from tests.registry.conftest import new_version
from tests.registry.doctor.support import WHO, doctor, healthy, kinds


def test_a_missing_config_is_written_from_the_registry(store, model_store, config_path):
    served = healthy(store, model_store, config_path)
    config_path.unlink()

    (drift,) = doctor(store, model_store, config_path)
    assert (drift.kind, drift.version, drift.safe, drift.action) == (
        DriftKind.SERVING_CONFIG,
        served,
        True,
        RepairAction.SYNC_SERVING_CONFIG,
    )
    assert repair([drift], store, model_store, config_path, "doctor-test") == [f"rewrote {config_path} from the registry"]
    assert read_config(config_path) == served_models(store, model_store)
    assert doctor(store, model_store, config_path) == []


def test_a_stale_config_follows_the_registry_and_drops_a_model_without_production(store, model_store, config_path):
    old = healthy(store, model_store, config_path)
    new = new_version(store, model_store)
    store.promote("digits", new, **WHO)  # the config write after it "crashed"
    other = new_version(store, model_store, "letters")
    write_config(
        config_path,
        read_config(config_path) + [ServedModel("letters", str(model_store / "letters"), (other,), {"stable": other})],
    )

    drifts = doctor(store, model_store, config_path)
    assert kinds(drifts) == [
        (DriftKind.SERVING_CONFIG, "digits", new, True),
        (DriftKind.SERVING_CONFIG, "letters", None, True),
    ]
    assert f"stable->{old}" in drifts[0].description and f"stable->{new}" in drifts[0].description
    done = repair(drifts, store, model_store, config_path, "doctor-test")
    assert done == [f"rewrote {config_path} from the registry"]  # once, not once per model
    assert read_config(config_path) == [
        ServedModel("digits", str(model_store / "digits"), (old, new), {"stable": new, "previous": old})
    ]
    assert doctor(store, model_store, config_path) == []


def test_the_config_is_not_pointed_at_a_version_without_intact_files(store, model_store, config_path):
    old = healthy(store, model_store, config_path)
    new = new_version(store, model_store)
    store.promote("digits", new, **WHO)
    (model_store / "digits" / str(new) / "saved_model.pb").write_bytes(b"corrupted")
    before = config_path.read_text()

    drifts = doctor(store, model_store, config_path)
    assert kinds(drifts) == [
        (DriftKind.CHECKSUM_MISMATCH, "digits", new, False),
        (DriftKind.SERVING_CONFIG, "digits", new, False),
    ]
    assert "no intact folder" in drifts[1].repair
    assert repair(drifts, store, model_store, config_path, "doctor-test") == []
    assert config_path.read_text() == before
    assert read_config(config_path)[0].versions == (old,)


def test_an_unsafe_model_entry_blocks_rewriting_the_whole_file(store, model_store, config_path):
    healthy(store, model_store, config_path)
    healthy(store, model_store, config_path, "letters")
    config_path.unlink()
    (model_store / "letters" / "1" / "saved_model.pb").unlink()

    drifts = [d for d in doctor(store, model_store, config_path) if d.kind is DriftKind.SERVING_CONFIG]
    assert kinds(drifts) == [
        (DriftKind.SERVING_CONFIG, "digits", 1, False),
        (DriftKind.SERVING_CONFIG, "letters", 1, False),
    ]
    assert "letters" in drifts[0].repair
    assert repair(drifts, store, model_store, config_path, "doctor-test") == []
    assert not config_path.exists()


def test_a_served_model_the_registry_does_not_know_is_not_unloaded(store, model_store, config_path):
    healthy(store, model_store, config_path)
    write_config(
        config_path,
        read_config(config_path) + [ServedModel("mnist", str(model_store / "mnist"), (1,), {"stable": 1})],
    )
    drifts = doctor(store, model_store, config_path)
    assert kinds(drifts) == [(DriftKind.SERVING_CONFIG, "mnist", None, False)]
    assert "registry URL" in drifts[0].repair


def test_an_unreadable_config_is_rewritten(store, model_store, config_path):
    healthy(store, model_store, config_path)
    config_path.write_text("this is { not a ModelServerConfig")
    (drift,) = doctor(store, model_store, config_path)
    assert (drift.kind, drift.model, drift.safe) == (DriftKind.SERVING_CONFIG, "*", True)
    repair([drift], store, model_store, config_path, "doctor-test")
    assert doctor(store, model_store, config_path) == []


# -- all at once ----------------------------------------------------------------------------
