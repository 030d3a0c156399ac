"""Every illegal move the store's API can attempt is refused, and changes nothing.

Rows are driven into each status through the public API, then the API call that would move
them to the target status is made. Targets reached only as a side effect (registering,
superseded, archived, rolled_back) are covered by the pure table tests. A canary's way back to
registered, pending_approval or approved is open only to ``abort_canary`` (see test_canary.py):
the ordinary calls are refused here.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable

import pytest

from registry.errors import IllegalTransition
from registry.lifecycle import CANARY, PREVIOUS, PRODUCTION, is_allowed
from registry.models import VersionStatus as S
from registry.store import RegistryStore

WHO = {"actor": "tester", "reason": "trying an illegal move"}

# What each target status is asked with; ``fields`` are complete_registration's arguments.
ATTEMPTS: dict[S, Callable[[RegistryStore, str, int, dict], object]] = {
    S.REGISTERED: lambda store, model, version, fields: store.complete_registration(model, version, **fields),
    S.FAILED: lambda store, model, version, _: store.mark_failed(model, version, **WHO),
    S.PENDING_APPROVAL: lambda store, model, version, _: store.request_approval(model, version, **WHO),
    S.APPROVED: lambda store, model, version, _: store.approve(model, version, **WHO),
    S.PRODUCTION: lambda store, model, version, _: store.promote(model, version, **WHO),
    S.REJECTED: lambda store, model, version, _: store.reject(model, version, **WHO),
    S.DELETED: lambda store, model, version, _: store.mark_deleted(model, version, **WHO),
    S.CANARY: lambda store, model, version, _: store.start_canary(model, version, soak_seconds=60, **WHO),
}

# Not allowed, force-only or abort-only: what these calls, which never force, must refuse.
REFUSED = [(current, target) for current, target in itertools.product(S, ATTEMPTS) if not is_allowed(current, target)]


def _drive(store: RegistryStore, model: str, state: S, drive, register) -> int:
    if state is not S.CANARY:
        return drive(store, model, state)
    drive(store, model, S.PRODUCTION)  # a canary needs a production version
    version = register(store, model).version
    store.start_canary(model, version, soak_seconds=60, actor="tester", reason="driving the test")
    return version


def _snapshot(store: RegistryStore, model: str) -> tuple:
    return (
        store.list_versions(model),
        store.list_events(model),
        store.get_alias(model, PRODUCTION),
        store.get_alias(model, PREVIOUS),
        store.get_alias(model, CANARY),
        store.get_canary(model),
    )


@pytest.mark.parametrize(("current", "target"), REFUSED, ids=[f"{a.value}->{b.value}" for a, b in REFUSED])
def test_the_store_refuses_an_illegal_move_and_changes_nothing(
    module_store, drive, register, registration_fields, current, target
):
    model = f"m-{uuid.uuid4().hex[:10]}"
    version = _drive(module_store, model, current, drive, register)
    assert module_store.get_version(model, version).status is current
    before = _snapshot(module_store, model)

    with pytest.raises(IllegalTransition) as raised:
        ATTEMPTS[target](module_store, model, version, registration_fields())

    assert f"{model!r} version {version}" in str(raised.value)
    assert f"from {current.value} to {target.value}" in str(raised.value)
    assert _snapshot(module_store, model) == before
