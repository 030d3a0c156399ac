"""The lifecycle table and its check, without a database."""

from __future__ import annotations

import itertools

import pytest

from registry.errors import IllegalTransition, RegistryError
from registry.lifecycle import ALLOWED, CANARY_ABORT_ONLY, FORCE_ONLY, check_transition, is_allowed
from registry.models import VersionStatus as S

ALL_PAIRS = list(itertools.product(S, S))
ALLOWED_PAIRS = [(a, b) for a, b in ALL_PAIRS if b in ALLOWED[a] and (a, b) not in FORCE_ONLY | CANARY_ABORT_ONLY]
ILLEGAL_PAIRS = [(a, b) for a, b in ALL_PAIRS if b not in ALLOWED[a]]


def _id(pair: tuple[S, S]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


def test_the_table_is_the_specified_one():
    expected = {
        "registering": {"registered", "failed"},
        "registered": {"pending_approval", "canary", "production", "rejected", "superseded", "deleted"},
        "pending_approval": {"approved", "canary", "rejected", "superseded", "production"},
        "approved": {"canary", "production", "rejected", "superseded"},
        "canary": {"production", "registered", "pending_approval", "approved"},
        "production": {"archived", "rolled_back"},
        "archived": {"production", "deleted"},
        "rolled_back": {"production", "deleted"},
        "rejected": {"production", "deleted"},
        "superseded": {"production", "deleted"},
        "failed": {"deleted"},
        "deleted": set(),
    }
    assert {state.value: {t.value for t in targets} for state, targets in ALLOWED.items()} == expected
    assert FORCE_ONLY == {(S.REJECTED, S.PRODUCTION)}
    assert CANARY_ABORT_ONLY == {(S.CANARY, S.REGISTERED), (S.CANARY, S.PENDING_APPROVAL), (S.CANARY, S.APPROVED)}


@pytest.mark.parametrize("pair", sorted(CANARY_ABORT_ONLY), ids=_id)
def test_a_canary_returns_to_its_prior_status_only_when_aborted(pair):
    current, target = pair
    assert not is_allowed(current, target, force=True)
    with pytest.raises(IllegalTransition, match="aborting the canary"):
        check_transition("digits", 4, current, target, force=True)
    check_transition("digits", 4, current, target, canary_abort=True)
    assert is_allowed(current, target, canary_abort=True)


@pytest.mark.parametrize("pair", ALLOWED_PAIRS, ids=_id)
def test_allowed_moves_pass(pair):
    current, target = pair
    check_transition("digits", 3, current, target)
    assert is_allowed(current, target)


@pytest.mark.parametrize("pair", ILLEGAL_PAIRS, ids=_id)
def test_illegal_moves_are_refused_naming_model_version_and_both_states(pair):
    current, target = pair
    assert not is_allowed(current, target, force=True)
    with pytest.raises(IllegalTransition) as raised:
        check_transition("digits", 7, current, target, force=True)
    message = str(raised.value)
    assert "'digits'" in message and "version 7" in message
    assert f"from {current.value} to {target.value}" in message
    assert isinstance(raised.value, RegistryError)
    assert (raised.value.current, raised.value.target) == (current.value, target.value)


def test_a_rejected_version_reaches_production_only_when_forced():
    assert not is_allowed(S.REJECTED, S.PRODUCTION)
    with pytest.raises(IllegalTransition, match="force"):
        check_transition("digits", 2, S.REJECTED, S.PRODUCTION)
    check_transition("digits", 2, S.REJECTED, S.PRODUCTION, force=True)
    assert is_allowed(S.REJECTED, S.PRODUCTION, force=True)


def test_nothing_returns_to_registering_and_deleted_is_final():
    assert all(S.REGISTERING not in targets for targets in ALLOWED.values())
    assert ALLOWED[S.DELETED] == frozenset()
