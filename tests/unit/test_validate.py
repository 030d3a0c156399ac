"""The data contract (expectations/digits.json) and the validation stage, on real digits batches."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expectations import SuiteNotFound, suite_path
from tasks.data import LABEL, PIXELS, DataFolders, collect_incoming, corrupt_batch, not_a_batch
from tasks.validate import (
    NAME_TAKEN,
    NOT_A_BATCH,
    DataValidationError,
    SuiteError,
    quarantine,
    raise_for_failures,
    refusal_report,
    report_paths,
    screen_batches,
    validate_batch,
)
from tasks.validation_report import ValidationReport

REPO = Path(__file__).resolve().parents[2]
SUITE = suite_path("digits")
BETWEEN = "expect_column_values_to_be_between"
NOT_NULL = "expect_column_values_to_not_be_null"
IN_SET = "expect_column_values_to_be_in_set"
TYPES = "expect_column_values_to_be_in_type_list"
COLUMNS = "expect_table_columns_to_match_set"
ROWS = "expect_table_row_count_to_be_between"
SHARES = "expect_column_kl_divergence_to_be_less_than"


@pytest.fixture(scope="module")
def digits() -> pd.DataFrame:
    """All 1,797 bundled digits: pixel_0..pixel_63 float64 0-16, label int64 0-9."""
    from sklearn.datasets import load_digits

    data = load_digits()
    frame = pd.DataFrame(data.data.astype(np.float64), columns=PIXELS)
    frame[LABEL] = data.target.astype(np.int64)
    return frame


@pytest.fixture(scope="module")
def batch(digits) -> pd.DataFrame:
    """300 shuffled rows: a typical clean batch."""
    return digits.sample(n=300, random_state=7).reset_index(drop=True)


def failed(report: ValidationReport) -> set[tuple[str, str | None]]:
    return {(f.type, f.column) for f in report.failed}


def write(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


# --- the suite ---------------------------------------------------------------------------


def test_suite_is_the_contract_and_every_expectation_says_why():
    data = json.loads(SUITE.read_text())
    assert data["name"] == "digits"
    expectations = data["expectations"]
    assert len(expectations) == 2 + 4 + 3 * 64
    assert all(len(e.get("notes", "")) > 40 for e in expectations)
    (columns,) = [e for e in expectations if e["type"] == COLUMNS]
    assert columns["kwargs"] == {"column_set": [*PIXELS, LABEL], "exact_match": True}
    (rows,) = [e for e in expectations if e["type"] == ROWS]
    assert rows["kwargs"]["min_value"] == 50
    import great_expectations

    great_expectations.ExpectationSuite(**data)  # loads as a GX 1.x suite


def test_suite_path_resolves_names_and_paths_and_names_what_is_missing(tmp_path):
    assert suite_path("digits") == REPO / "expectations" / "digits.json"
    own = tmp_path / "mine.json"
    own.write_text("{}")
    assert suite_path(str(own)) == own and suite_path(own) == own
    with pytest.raises(SuiteNotFound, match=r"'nope' not found: looked for .*expectations/nope\.json \(bundled suites: digits"):
        suite_path("nope")
    with pytest.raises(SuiteNotFound, match="missing.json"):
        suite_path(str(tmp_path / "missing.json"))


def test_an_invalid_suite_is_a_suite_error_not_a_data_failure(tmp_path, batch):
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x", "expectations": [{"type": "expect_no_such_thing", "kwargs": {}}]}')
    with pytest.raises(SuiteError, match="broken.json has invalid expectations GX refused: expect_no_such_thing"):
        validate_batch(batch, broken, "b.parquet")
    broken.write_text("not json")
    with pytest.raises(SuiteError, match="not readable JSON"):
        validate_batch(batch, broken, "b.parquet")


# --- validate_batch ----------------------------------------------------------------------


def test_a_clean_batch_passes(batch):
    report = validate_batch(batch, SUITE, "digits-batch-0001.parquet")
    assert report.success, report.describe()
    assert report.evaluated == 198 and report.failed == []
    assert report.batch_name == "digits-batch-0001.parquet" and report.suite_name == "digits"
    assert report.result["success"] is True and len(report.result["results"]) == 198
    json.dumps(report.result, allow_nan=False)  # plain JSON, no numpy scalars
    assert pickle.loads(pickle.dumps(report)) == report  # crosses Prefect task boundaries


@pytest.mark.slow  # 5 validations of up to 900 rows; test_a_clean_batch_passes is the fast one
def test_every_bundled_batch_and_the_holdout_pass(digits_split):
    holdout, batches = digits_split
    for n, frame in enumerate([*batches, holdout]):
        report = validate_batch(frame, SUITE, f"bundled-{n}")
        assert report.success, f"{len(frame)} rows: {report.describe()}"


@pytest.mark.parametrize(
    ("kind", "expected", "summary"),
    [
        ("range", {(BETWEEN, "pixel_5"), (BETWEEN, "pixel_6")}, "43 of 300 values outside [0, 16] (e.g. 17)"),
        ("missing-column", {(COLUMNS, None), (BETWEEN, "pixel_10"), (NOT_NULL, "pixel_10"), (TYPES, "pixel_10")}, "missing pixel_10"),
        # The fast lane keeps two kinds; each failing validation takes 2-3 s.
        pytest.param("labels", {(IN_SET, LABEL), (SHARES, LABEL)}, "43 of 300 values not in {0, 1, 2, 3, 4, 5, 6, 7, 8, 9} (e.g. 12)", marks=pytest.mark.slow),
        pytest.param("nulls", {(NOT_NULL, "pixel_20")}, "43 of 300 values are null", marks=pytest.mark.slow),
        pytest.param("few-rows", {(ROWS, None), (SHARES, LABEL)}, "observed 5 rows, expected at least 50", marks=pytest.mark.slow),
    ],
)
def test_each_corruption_fails_the_expectation_that_guards_against_it(batch, kind, expected, summary):
    report = validate_batch(corrupt_batch(batch, kind), SUITE, f"digits-corrupt-{kind}-0001.parquet")
    assert not report.success
    if kind == "few-rows":  # 5 rows also skew the label shares, depending on which 5
        assert (ROWS, None) in failed(report)
    else:
        assert failed(report) == expected
    assert report.evaluated == 198
    assert report.failed[0].summary == summary  # table-level first, then columns
    assert report.failed[0].notes  # why the expectation exists travels with the failure


@pytest.mark.slow  # 3 failing validations (each runs twice: BOOLEAN_ONLY, then SUMMARY)
def test_label_shares_single_class_skewed_and_shifted_batches_fail(digits):
    single = digits[digits[LABEL] == 3]  # 183 rows of one digit
    report = validate_batch(single, SUITE, "threes")
    assert failed(report) == {(SHARES, LABEL)}
    assert report.failed[0].summary.startswith("KL divergence 2.303 > 0.25; largest share 3 at 100%")

    seven_digits = digits[digits[LABEL] < 7].sample(n=300, random_state=1)  # 3 digits absent
    assert failed(validate_batch(seven_digits, SUITE, "seven")) == {(SHARES, LABEL)}

    shifted = digits.sample(n=300, random_state=2).assign(label=lambda f: f[LABEL] + 1)  # 1-10
    report = validate_batch(shifted, SUITE, "shifted")
    assert failed(report) == {(IN_SET, LABEL), (SHARES, LABEL)}
    assert "divergence is infinite" in report.describe()


@pytest.mark.slow  # 3 more validations
def test_small_real_batches_pass_the_label_share_check(digits):
    for seed in range(3):
        sample = digits.sample(n=100, random_state=seed)
        assert validate_batch(sample, SUITE, f"sample-{seed}").success


@pytest.mark.slow  # 3 validations, 2 of them failing
def test_extra_columns_and_wrong_types_fail(batch):
    extra = batch.assign(source="scanner-2")
    report = validate_batch(extra, SUITE, "extra")
    assert failed(report) == {(COLUMNS, None)} and report.failed[0].summary == "unexpected source"

    float_labels = batch.assign(label=batch[LABEL].astype(np.float64))
    report = validate_batch(float_labels, SUITE, "float-labels")
    assert failed(report) == {(TYPES, LABEL)} and report.failed[0].summary.startswith("dtype float64, expected one of int64")

    int_pixels = batch.astype({p: np.int64 for p in PIXELS})  # e.g. read from a CSV of integers
    assert validate_batch(int_pixels, SUITE, "int-pixels").success


# --- quarantine and the error ------------------------------------------------------------


def test_quarantine_moves_the_file_beside_its_json_and_data_docs_page(tmp_path, batch):
    source = write(corrupt_batch(batch, "range"), tmp_path / "incoming" / "digits-corrupt-range-0001.parquet")
    original = source.read_bytes()
    report = validate_batch(pd.read_parquet(source), SUITE, source.name)

    moved = quarantine(source, report, tmp_path / "quarantine")

    assert moved == tmp_path / "quarantine" / source.name and moved.read_bytes() == original
    assert not source.exists()
    result_json, page = report_paths(moved)
    assert result_json.name == f"{source.name}.validation.json" and page.name == f"{source.name}.html"
    saved = json.loads(result_json.read_text())
    assert saved["success"] is False and saved == report.result
    text = page.read_text()
    assert text.lstrip().lower().startswith("<!doctype html") and "Great Expectations" in text
    assert "expect_column_values_to_be_between(pixel_5)" in text and "43 of 300 values outside [0, 16]" in text
    assert sorted(p.name for p in moved.parent.iterdir()) == sorted([moved.name, result_json.name, page.name])

    # The same name again: a suffix, nothing overwritten.
    again = write(corrupt_batch(batch, "range"), source)
    second = quarantine(again, report, tmp_path / "quarantine")
    assert second.name == "digits-corrupt-range-0001.1.parquet"
    assert all(p.exists() for p in (moved, *report_paths(moved), second, *report_paths(second)))


def test_quarantine_of_a_missing_file_writes_nothing(tmp_path, batch):
    report = validate_batch(corrupt_batch(batch, "nulls"), SUITE, "gone.parquet")
    with pytest.raises(FileNotFoundError, match="gone.parquet"):
        quarantine(tmp_path / "gone.parquet", report, tmp_path / "quarantine")
    assert not any((tmp_path / "quarantine").glob("*"))


def test_the_error_names_each_file_its_expectations_and_reports(tmp_path, batch):
    report = validate_batch(corrupt_batch(batch, "range"), SUITE, "digits-batch-0003.parquet")
    path = tmp_path / "quarantine" / "digits-batch-0003.parquet"
    raise_for_failures([])  # nothing failed: no error
    with pytest.raises(DataValidationError) as caught:
        raise_for_failures([(report, path)])
    message = str(caught.value)
    assert (
        "batch digits-batch-0003.parquet failed 2 of 198 expectations: "
        "expect_column_values_to_be_between(pixel_5): 43 of 300 values outside [0, 16] (e.g. 17); "
        "expect_column_values_to_be_between(pixel_6): 43 of 300 values outside [0, 16] (e.g. -1)"
        f" — quarantined at {path} (report: {path}.html)"
    ) in message
    assert caught.value.failures == [(report, path)]
    assert str(pickle.loads(pickle.dumps(caught.value))) == message  # survives Prefect's state serialization


def test_screen_batches_accepts_good_quarantines_bad_and_then_raises(tmp_path, batch):
    folders = DataFolders(root=tmp_path, incoming=tmp_path / "incoming").create()
    good = write(batch, folders.incoming / "digits-batch-0001.parquet")
    bad = write(corrupt_batch(batch, "missing-column"), folders.incoming / "digits-corrupt-missing-column-0001.parquet")
    unreadable = folders.incoming / "scan.csv"
    unreadable.write_bytes(b"\x00\x01 not a csv \xff")

    with pytest.raises(DataValidationError) as caught:
        screen_batches([good, bad, unreadable], SUITE, folders)

    message = str(caught.value)
    assert message.startswith("2 batches broke the data contract")
    assert f"batch {bad.name} failed 4 of 198 expectations: expect_table_columns_to_match_set: missing pixel_10" in message
    assert "batch scan.csv could not be read: " in message and good.name not in message
    assert sorted(p.name for p in folders.accepted.iterdir()) == [good.name]
    quarantined = sorted(p.name for p in folders.quarantine.iterdir())
    for name in (bad.name, unreadable.name):
        assert {name, f"{name}.validation.json", f"{name}.html"} <= set(quarantined)
    assert not any(folders.incoming.iterdir())


def test_screen_batches_returns_the_accepted_paths_when_all_pass(tmp_path, batch):
    folders = DataFolders(root=tmp_path, incoming=tmp_path / "incoming").create()
    good = write(batch, folders.incoming / "digits-batch-0001.parquet")
    recorded: list[Path] = []
    assert screen_batches([good], SUITE, folders, record=recorded.append) == [folders.accepted / good.name]
    assert recorded == [folders.accepted / good.name]  # told of each batch once it is in accepted/


# --- entries of incoming/ that are refused -------------------------------------------------


def test_entries_that_are_not_batch_files_are_quarantined_with_a_reason_after_good_batches(tmp_path, batch):
    folders = DataFolders(root=tmp_path, incoming=tmp_path / "incoming").create()
    good = write(batch, folders.incoming / "digits-batch-0001.parquet")
    folder = folders.incoming / "x.csv"
    write(batch, folder / "part-0.parquet")
    (folders.incoming / "notes.txt").write_text("delivered by hand\n")
    unreadable = folders.incoming / "scan.csv"
    unreadable.write_bytes(b"\x00\x01 not a csv \xff")
    in_flight = folders.incoming / ".digits-batch-0002.parquet.k2j4"  # a producer's temporary
    in_flight.write_bytes(b"half a batch")
    part = (folder / "part-0.parquet").read_bytes()

    entries = collect_incoming(folders, bundled=False)
    with pytest.raises(DataValidationError) as caught:
        screen_batches(entries, SUITE, folders)

    q = folders.quarantine
    assert str(caught.value) == "\n".join([
        "3 incoming entries could not be accepted and were quarantined:",
        (
            "notes.txt is a .txt file, not a batch file (batch files end in .parquet or .csv)"
            f" — quarantined at {q / 'notes.txt'} (report: {q / 'notes.txt.html'})"
        ),
        (
            f"batch scan.csv could not be read: {caught.value.failures[1][0].failed[0].summary}"
            f" — quarantined at {q / 'scan.csv'} (report: {q / 'scan.csv.html'})"
        ),
        (
            "x.csv is a directory, not a batch file (a batch is one .parquet or .csv file)"
            f" — quarantined at {q / 'x.csv'} (report: {q / 'x.csv.html'})"
        ),
    ])
    assert [p.name for p in folders.accepted.iterdir()] == [good.name]  # accepted before the night failed
    assert sorted(p.name for p in q.iterdir()) == sorted(
        f"{name}{end}" for name in ("notes.txt", "scan.csv", "x.csv") for end in ("", ".validation.json", ".html")
    )
    assert (q / "x.csv").is_dir() and (q / "x.csv" / "part-0.parquet").read_bytes() == part  # moved whole
    assert (q / "notes.txt").read_text() == "delivered by hand\n"
    saved = json.loads((q / "x.csv.validation.json").read_text())
    assert saved == {
        "success": False, "suite_name": "digits", "batch_name": "x.csv", "refused": NOT_A_BATCH,
        "reason": "x.csv is a directory, not a batch file (a batch is one .parquet or .csv file)",
    }
    page = (q / "x.csv.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "x.csv is a directory, not a batch file" in page
    assert [p.name for p in folders.incoming.iterdir()] == [in_flight.name]  # still in flight: untouched

    # The next night does not see them again; a new entry of the same name gets a new one.
    assert collect_incoming(folders, bundled=False) == []
    (folders.incoming / "x.csv").mkdir()
    with pytest.raises(DataValidationError, match=r"^1 incoming entry could not be accepted and was quarantined:\nx\.csv is a directory"):
        screen_batches(collect_incoming(folders, bundled=False), SUITE, folders)
    assert (q / "x.1.csv").is_dir() and (q / "x.csv" / "part-0.parquet").read_bytes() == part


def test_a_batch_under_an_accepted_name_with_other_bytes_is_quarantined_naming_the_accepted_file(tmp_path, batch, digits):
    folders = DataFolders(root=tmp_path, incoming=tmp_path / "incoming").create()
    accepted = write(batch, folders.accepted / "digits-batch-0001.parquet")
    also_accepted = write(batch.head(100), folders.accepted / "digits-batch-0002.parquet")
    before = {p.name: p.read_bytes() for p in (accepted, also_accepted)}
    other = write(digits.sample(n=300, random_state=11), folders.incoming / accepted.name)  # passes the contract
    other_bytes = other.read_bytes()
    again = folders.incoming / also_accepted.name
    again.write_bytes(also_accepted.read_bytes())  # the same batch delivered twice

    with pytest.raises(DataValidationError) as caught:
        screen_batches(collect_incoming(folders, bundled=False), SUITE, folders)

    q = folders.quarantine
    assert str(caught.value) == (
        "1 incoming entry could not be accepted and was quarantined:\n"
        f"digits-batch-0001.parquet: a different batch of that name was accepted before ({accepted}); "
        "an accepted batch is never replaced: deliver the new one under a new name"
        f" — quarantined at {q / accepted.name} (report: {q / accepted.name}.html)"
    )
    ((report, path),) = caught.value.failures
    assert path == q / accepted.name and report.failed[0].type == NAME_TAKEN
    assert (q / accepted.name).read_bytes() == other_bytes
    assert json.loads((q / f"{accepted.name}.validation.json").read_text())["refused"] == NAME_TAKEN
    assert str(accepted) in (q / f"{accepted.name}.html").read_text()
    assert {p.name: p.read_bytes() for p in folders.accepted.iterdir()} == before  # accepted data unchanged
    assert not any(folders.incoming.iterdir())  # the duplicate was dropped, the clash quarantined
    assert collect_incoming(folders, bundled=False) == []  # the next night does not fail on it again


def test_quarantine_of_a_broken_link_moves_the_link(tmp_path):
    link = tmp_path / "incoming" / "gone.csv"
    link.parent.mkdir()
    link.symlink_to(tmp_path / "nowhere.csv")
    report = refusal_report(link, "digits", NOT_A_BATCH, not_a_batch(link))
    moved = quarantine(link, report, tmp_path / "quarantine")
    assert moved.is_symlink() and not os.path.lexists(link)
    assert "gone.csv is not a regular file" in report_paths(moved)[1].read_text()
