"""Authorizations in the registry: a human's grant of one release, canary or rollback is recorded
with who, when and which Slack message, claimed by one flow run and used at most once, in the
transaction of the change it allowed. On SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from alembic import command

from registry.database import alembic_config
from registry.errors import AuthorizationRefused, IllegalTransition
from registry.models import AuthorizationGrant, AuthorizedAction, VersionStatus
from registry.store import RegistryStore
from registry.transactions import utc_now
from tests.registry.test_registry_migrations import schema_diffs

A = AuthorizedAction


def grant(version: int, action: AuthorizedAction = A.RELEASE, **fields) -> AuthorizationGrant:
    values = {"model_name": "digits", "version": version, "action": action, "actor": "slack:UALICE", "reason": "looks good"}
    return AuthorizationGrant(**(values | fields))


def snapshot(store: RegistryStore) -> tuple:
    aliases = [store.get_alias("digits", alias) for alias in ("production", "previous", "canary")]
    return store.list_versions("digits"), store.list_events("digits"), aliases, store.list_authorizations("digits")


def test_an_approval_records_who_when_and_which_message_with_the_grant_in_one_transaction(store, register):
    version = register(store, "digits").version
    store.request_approval("digits", version, actor="policy", reason="a tie")
    before = utc_now()

    granted = store.approve_and_authorize(
        grant(version, reason="approved in Slack by UALICE", slack_channel="C0RELEASES", slack_message_ts="1764000000.000100")
    )

    assert store.get_version("digits", version).status is VersionStatus.APPROVED
    (approved,) = [e for e in store.list_events("digits") if e.action.value == "approved"]
    assert (approved.actor, approved.reason) == ("slack:UALICE", "approved in Slack by UALICE")
    assert store.list_authorizations("digits") == [granted] == [store.get_authorization(granted.id)]
    assert (granted.actor, granted.slack_channel, granted.slack_message_ts) == ("slack:UALICE", "C0RELEASES", "1764000000.000100")
    assert before <= granted.granted_at <= utc_now() and granted.used_at is None and granted.flow_run_id is None
    assert len(granted.id) >= 24 and granted.id != store.grant_authorization(grant(version)).id  # unguessable, never reused

    # A second approval (a second click) is refused and leaves no second grant from it.
    with pytest.raises(IllegalTransition, match="approved"):
        store.approve_and_authorize(grant(version, actor="slack:UBOB"))
    assert [g.actor for g in store.list_authorizations("digits")] == ["slack:UALICE", "slack:UALICE"]


@pytest.mark.parametrize(
    "bad",
    [
        {"actor": " "},
        {"reason": ""},
        {"action": A.ROLLBACK},  # a rollback names the version it leaves
        {"from_version": 1},  # and only a rollback does
        {"action": A.CANARY, "force": True},
        {"slack_channel": "C0RELEASES"},  # without the message's ts
    ],
)
def test_a_grant_that_does_not_fit_its_action_is_refused(store, register, bad):
    version = register(store, "digits").version
    with pytest.raises(ValueError, match="registry: "):
        store.grant_authorization(grant(version, **bad))
    assert store.list_authorizations("digits") == []


def test_a_release_uses_its_grant_once_and_only_as_granted(store, register):
    v0, v1, v2 = (register(store, "digits").version for _ in range(3))
    store.promote("digits", v0, actor="policy", reason="setup")  # so that a canary could start
    store.reject("digits", v2, actor="policy", reason="recall drop")
    granted = store.grant_authorization(grant(v1)).id
    refused = {
        "another version": lambda: store.promote("digits", v2, actor="slack:UALICE", reason="r", force=True, authorization=granted),
        "another actor": lambda: store.promote("digits", v1, actor="slack:UMALLORY", reason="r", authorization=granted),
        "a canary": lambda: store.start_canary("digits", v1, actor="slack:UALICE", reason="r", soak_seconds=60, authorization=granted),
        "an unknown grant": lambda: store.promote("digits", v1, actor="slack:UALICE", reason="r", authorization="x" * 24),
    }
    before = snapshot(store)
    for case, attempt in refused.items():
        with pytest.raises(AuthorizationRefused, match="refused: "):
            attempt()
        assert snapshot(store) == before, case

    promoted = store.promote("digits", v1, actor="slack:UALICE", reason="looks good", flow_run_id=None, authorization=granted)
    assert promoted.status is VersionStatus.PRODUCTION
    used = store.get_authorization(granted)
    event = [e for e in store.list_events("digits") if e.action.value == "promoted"][-1]
    assert (event.version, event.actor) == (v1, "slack:UALICE")
    assert used.used_at == event.created_at and used.flow_run_id is None

    # Used: a second change on it is refused, whatever the version's status allows.
    forced = store.grant_authorization(grant(v2, force=True, actor="cli:alice")).id
    store.promote("digits", v2, actor="cli:alice", reason="looks good", force=True, authorization=forced)
    after = snapshot(store)
    with pytest.raises(AuthorizationRefused, match="used already"):
        store.promote("digits", v1, actor="slack:UALICE", reason="again", authorization=granted)
    assert snapshot(store) == after


def test_a_forced_release_needs_a_forced_grant(store, register):
    version = register(store, "digits").version
    store.reject("digits", version, actor="policy", reason="recall drop")
    granted = store.grant_authorization(grant(version, actor="cli:alice")).id
    with pytest.raises(AuthorizationRefused, match="does not allow a forced release"):
        store.promote("digits", version, actor="cli:alice", reason="r", force=True, authorization=granted)
    assert store.get_version("digits", version).status is VersionStatus.REJECTED
    assert store.get_authorization(granted).used_at is None


def test_a_rollback_grant_names_the_production_version_it_leaves(store, register):
    v1, v2, v3 = (register(store, "digits").version for _ in range(3))
    for version in (v1, v2):
        store.promote("digits", version, actor="policy", reason="setup")
    granted = store.grant_authorization(grant(v1, A.ROLLBACK, from_version=v2)).id
    store.promote("digits", v3, actor="policy", reason="a release in between")  # production moved: v3

    before = snapshot(store)
    with pytest.raises(AuthorizationRefused, match=f"granted for the rollback of digits from v{v2} to v{v1}, not the rollback of digits from v{v3} to v{v1}"):
        store.rollback("digits", actor="slack:UALICE", reason="latency", to_version=v1, authorization=granted)
    assert snapshot(store) == before


def test_a_canary_uses_its_grant(store, register):
    v1, v2 = register(store, "digits").version, register(store, "digits").version
    store.promote("digits", v1, actor="policy", reason="setup")
    granted = store.grant_authorization(grant(v2, A.CANARY)).id
    store.claim_authorization(granted, action=A.CANARY, model="digits", version=v2, flow_run_id="run-1")
    with pytest.raises(AuthorizationRefused, match="flow run run-1 claimed it"):  # not outside that run
        store.start_canary("digits", v2, actor="slack:UALICE", reason="soak it", soak_seconds=60, authorization=granted)
    canary = store.start_canary(
        "digits", v2, actor="slack:UALICE", reason="soak it", soak_seconds=60, flow_run_id="run-1", authorization=granted
    )
    assert canary.version == v2 and store.get_authorization(granted).used_at == canary.started_at


def test_of_runs_claiming_one_grant_at_once_exactly_one_gets_it(store, register):
    version = register(store, "digits").version
    granted = store.grant_authorization(grant(version)).id

    def claim(run: int) -> str:
        try:
            store.claim_authorization(granted, action=A.RELEASE, model="digits", version=version, flow_run_id=f"run-{run}")
        except AuthorizationRefused:
            return "refused"
        return f"run-{run}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(claim, range(8)))
    (winner,) = [o for o in outcomes if o != "refused"]
    assert store.get_authorization(granted).flow_run_id == winner
    # The winner may claim again (a retried step); nobody else may.
    assert store.claim_authorization(granted, action=A.RELEASE, model="digits", version=version, flow_run_id=winner).flow_run_id == winner


def test_0007_downgrades_and_upgrades_keeping_the_rest_of_the_registry(store, register):
    version = register(store, "digits").version
    store.promote("digits", version, actor="policy", reason="before the downgrade")
    store.grant_authorization(grant(version))
    versions, events = store.list_versions("digits"), store.list_events("digits")

    with store.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0006")
    assert "release_authorization" not in sa.inspect(store.engine).get_table_names()
    assert (store.list_versions("digits"), store.list_events("digits")) == (versions, events)

    with store.engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
    assert schema_diffs(store.engine) == [] and store.list_authorizations("digits") == []
    assert store.grant_authorization(grant(version)).used_at is None
