"""The bundled digits source and batch delivery."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.data import (
    CORRUPT_KINDS,
    LABEL,
    PIXELS,
    DataError,
    DataFolders,
    NoMoreBatches,
    accept_batch,
    clashes_with_accepted,
    collect_incoming,
    drop_bundled_batch,
    list_batches,
    not_a_batch,
    read_batch,
)


def test_split_is_stratified_and_deterministic(digits_split):
    holdout, batches = digits_split
    assert len(holdout) == 360 and sum(len(b) for b in batches) == 1797 - 360
    assert len(batches[0]) >= 800
    assert list(holdout.columns) == [*PIXELS, LABEL]
    shares = holdout[LABEL].value_counts(normalize=True)
    assert shares.min() > 0.08 and shares.max() < 0.12
    from tasks.data import bundled_split

    again_holdout, again_batches = bundled_split()
    pd.testing.assert_frame_equal(holdout, again_holdout)
    pd.testing.assert_frame_equal(batches[-1], again_batches[-1])


def test_batches_are_delivered_in_order_until_exhausted(tmp_path, digits_split):
    _, batches = digits_split
    folders = DataFolders(root=tmp_path, incoming=tmp_path / "incoming").create()
    first = drop_bundled_batch(folders)
    assert first.name == "digits-batch-0001.parquet"
    pd.testing.assert_frame_equal(read_batch(first), batches[0])
    accept_batch(first, folders)  # accepted batches count as delivered
    assert drop_bundled_batch(folders).name == "digits-batch-0002.parquet"
    for _ in range(len(batches) - 2):
        drop_bundled_batch(folders)
    with pytest.raises(NoMoreBatches, match="all 6 bundled"):
        drop_bundled_batch(folders)
    assert folders.holdout.exists()


@pytest.mark.parametrize("kind", CORRUPT_KINDS)
def test_corrupt_batch_does_not_use_up_the_clean_one(tmp_path, kind):
    folders = DataFolders(root=tmp_path, incoming=tmp_path / "incoming").create()
    broken = drop_bundled_batch(folders, corrupt=kind)
    assert broken.name == f"digits-corrupt-{kind}-0001.parquet"
    frame = read_batch(broken)
    if kind == "range":
        assert frame[PIXELS].to_numpy().max() > 16 and frame[PIXELS].to_numpy().min() < 0
    elif kind == "missing-column":
        assert "pixel_10" not in frame.columns
    elif kind == "labels":
        assert frame[LABEL].max() > 9
    elif kind == "nulls":
        assert frame[PIXELS].isna().any().any()
    else:
        assert len(frame) == 5
    assert drop_bundled_batch(folders).name == "digits-batch-0001.parquet"


def test_collect_incoming_drops_a_batch_only_when_incoming_is_empty(tmp_path):
    folders = DataFolders(root=tmp_path, incoming=tmp_path / "incoming")
    assert [p.name for p in collect_incoming(folders, bundled=True)] == ["digits-batch-0001.parquet"]
    assert [p.name for p in collect_incoming(folders, bundled=True)] == ["digits-batch-0001.parquet"]
    (tmp_path / "incoming" / "digits-batch-0001.parquet").unlink()
    assert collect_incoming(folders, bundled=False) == []


def test_read_batch_names_the_file_and_problem(tmp_path):
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="broken.parquet: cannot read batch"):
        read_batch(bad)
    with pytest.raises(DataError, match="missing"):
        read_batch(tmp_path / "absent.csv")
    with pytest.raises(DataError, match="Parquet or CSV"):
        read_batch(tmp_path / "batch.json")


def test_csv_batches_and_hidden_files(tmp_path):
    pd.DataFrame({"pixel_0": [1.0], LABEL: [3]}).to_csv(tmp_path / "b.csv", index=False)
    (tmp_path / ".b.parquet.partial").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_batches(tmp_path)] == ["b.csv"]
    assert read_batch(tmp_path / "b.csv")[LABEL].dtype == np.int64


def test_accepting_a_different_file_under_an_accepted_name_is_refused(tmp_path):
    folders = DataFolders(root=tmp_path, incoming=tmp_path / "incoming").create()
    (folders.accepted / "b.csv").write_text("x\n1\n")
    (folders.incoming / "b.csv").write_text("x\n2\n")
    with pytest.raises(DataError, match="different batch"):
        accept_batch(folders.incoming / "b.csv", folders)
    assert (folders.incoming / "b.csv").exists()


def test_collect_incoming_returns_every_entry_but_hidden_ones_in_flight(tmp_path):
    folders = DataFolders(root=tmp_path, incoming=tmp_path / "incoming").create()
    (folders.incoming / "b.csv").write_text("x\n1\n")
    (folders.incoming / "x.csv").mkdir()
    (folders.incoming / "notes.txt").write_text("x")
    (folders.incoming / "README").write_text("x")
    (folders.incoming / ".c.parquet.k2j4").write_bytes(b"half a batch")  # a producer's temporary
    (folders.incoming / ".uploading").mkdir()

    waiting = collect_incoming(folders, bundled=True)  # not empty: no bundled batch is dropped

    assert [p.name for p in waiting] == ["README", "b.csv", "notes.txt", "x.csv"]
    assert [p.name for p in list_batches(folders.incoming)] == ["b.csv"]
    assert [not_a_batch(p) for p in waiting] == [
        "README has no suffix, so it is not a batch file (batch files end in .parquet or .csv)",
        None,
        "notes.txt is a .txt file, not a batch file (batch files end in .parquet or .csv)",
        "x.csv is a directory, not a batch file (a batch is one .parquet or .csv file)",
    ]


def test_only_hidden_files_in_incoming_count_as_empty(tmp_path):
    folders = DataFolders(root=tmp_path, incoming=tmp_path / "incoming").create()
    (folders.incoming / ".digits-batch-0009.parquet.abc").write_bytes(b"")
    assert [p.name for p in collect_incoming(folders, bundled=True)] == ["digits-batch-0001.parquet"]
    assert (folders.incoming / ".digits-batch-0009.parquet.abc").exists()


def test_a_clash_with_an_accepted_batch_names_the_accepted_file(tmp_path):
    folders = DataFolders(root=tmp_path, incoming=tmp_path / "incoming").create()
    (folders.accepted / "b.csv").write_text("x\n1\n")
    (folders.incoming / "b.csv").write_text("x\n2\n")
    (folders.incoming / "c.csv").write_text("x\n3\n")
    assert clashes_with_accepted(folders.incoming / "b.csv", folders) == (
        f"b.csv: a different batch of that name was accepted before ({folders.accepted / 'b.csv'}); "
        "an accepted batch is never replaced: deliver the new one under a new name"
    )
    assert clashes_with_accepted(folders.incoming / "c.csv", folders) is None  # no accepted c.csv
    (folders.incoming / "b.csv").write_text("x\n1\n")
    assert clashes_with_accepted(folders.incoming / "b.csv", folders) is None  # the same bytes
    assert accept_batch(folders.incoming / "b.csv", folders) == folders.accepted / "b.csv"
    assert not (folders.incoming / "b.csv").exists() and (folders.accepted / "b.csv").read_text() == "x\n1\n"
