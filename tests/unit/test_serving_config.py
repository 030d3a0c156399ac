"""The TF Serving ModelServerConfig text written on promotion."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tasks.serving_config import (
    ServedModel,
    ServingConfigError,
    read_config,
    render_config,
    write_config,
)


def test_config_parses_as_tf_serving_proto_with_specific_versions_and_stable_label(tmp_path: Path):
    text = render_config([ServedModel("digits", str(tmp_path / "digits"), (3,), {"stable": 3})])
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    (entry,) = config.model_config_list.config
    assert entry.name == "digits"
    assert entry.base_path == str(tmp_path / "digits")
    assert entry.model_platform == "tensorflow"
    assert list(entry.model_version_policy.specific.versions) == [3]
    assert dict(entry.version_labels) == {"stable": 3}


def test_write_then_read_round_trips_every_model(tmp_path: Path):
    models = [
        ServedModel("zeta", str(tmp_path / "zeta"), (1,), {"stable": 1}),
        ServedModel("digits", str(tmp_path / "digits"), (2, 4), {"stable": 4}),
    ]
    path = tmp_path / "models.config"
    write_config(path, models)
    assert read_config(path) == sorted(models, key=lambda m: m.name)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_label_on_an_unserved_version_is_refused_and_the_old_file_kept(tmp_path: Path):
    path = tmp_path / "models.config"
    write_config(path, [ServedModel("digits", str(tmp_path), (1,), {"stable": 1})])
    before = path.read_text()
    with pytest.raises(ServingConfigError, match="not a served version"):
        write_config(path, [ServedModel("digits", str(tmp_path), (1,), {"stable": 2})])
    assert path.read_text() == before


def test_a_broken_config_file_is_reported_with_its_path(tmp_path: Path):
    path = tmp_path / "models.config"
    path.write_text("model_config_list { config { nme: 'x' } }")
    with pytest.raises(ServingConfigError, match="models.config"):
        read_config(path)


def test_missing_config_reads_as_empty(tmp_path: Path):
    assert read_config(tmp_path / "absent.config") == []


def test_write_is_a_rename_so_a_reader_never_sees_a_partial_file(tmp_path: Path):
    path = tmp_path / "models.config"
    write_config(path, [ServedModel("digits", str(tmp_path), (1,), {"stable": 1})])
    inode = os.stat(path).st_ino
    write_config(path, [ServedModel("digits", str(tmp_path), (2,), {"stable": 2})])
    assert os.stat(path).st_ino != inode  # replaced by rename, not rewritten in place
