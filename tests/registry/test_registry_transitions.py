"""Every illegal move the store's API can attempt is refused, and changes nothing.

Rows are driven into each status through the public API, then the API call that would move
them to the target status is made. Targets reached only as a side effect (registering,
superseded, archived, rolled_back) are covered by the pure table tests.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable

import pytest

from registry.errors import IllegalTransition
from registry.lifecycle import ALLOWED, FORCE_ONLY, PREVIOUS, PRODUCTION
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
}

REFUSED = [
    (current, target)
    for current, target in itertools.product(S, ATTEMPTS)
    if target not in ALLOWED[current] or (current, target) in FORCE_ONLY
]


def _snapshot(store: RegistryStore, model: str) -> tuple:
    return (
        store.list_versions(model),
        store.list_events(model),
        store.get_alias(model, PRODUCTION),
        store.get_alias(model, PREVIOUS),
    )


@pytest.mark.parametrize(("current", "target"), REFUSED, ids=[f"{a.value}->{b.value}" for a, b in REFUSED])
def test_the_store_refuses_an_illegal_move_and_changes_nothing(
    module_store, drive, registration_fields, current, target
):
    model = f"m-{uuid.uuid4().hex[:10]}"
    version = drive(module_store, model, current)
    assert module_store.get_version(model, version).status is current
    before = _snapshot(module_store, model)

    with pytest.raises(IllegalTransition) as raised:
        ATTEMPTS[target](module_store, model, version, registration_fields())

    assert f"{model!r} version {version}" in str(raised.value)
    assert f"from {current.value} to {target.value}" in str(raised.value)
    assert _snapshot(module_store, model) == before
