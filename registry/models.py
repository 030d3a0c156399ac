"""The registry's tables, their enums and the read models the store hands out.

Each entity follows the SQLModel family pattern: a ``...Base`` with the shared columns, the
``table=True`` class the store writes, and a public ``...Record`` read model. Callers only
ever see records (plain pydantic objects, detached from any session); only the registry store
(:class:`registry.store.RegistryStore` and the modules it is made of) touches the table classes.
The alias names and status sets live in :mod:`registry.lifecycle`.

All timestamps are timezone-aware UTC (SQLModel's ``UTCDateTime`` column type stores them as
``TIMESTAMP WITH TIME ZONE`` on PostgreSQL and as UTC without offset on SQLite, and returns
them aware either way).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from pydantic import ConfigDict
from sqlalchemy.orm import registry
from sqlmodel import JSON, Field, SQLModel


class VersionStatus(StrEnum):
    """Where a model version is in its life; allowed moves are in :mod:`registry.lifecycle`."""

    REGISTERING = "registering"  # number allocated, export under way
    FAILED = "failed"  # export or evaluation failed; the number stays consumed
    REGISTERED = "registered"  # exported and evaluated, no decision carried out yet
    PENDING_APPROVAL = "pending_approval"  # waiting for a human
    APPROVED = "approved"  # a human said yes; not yet released
    CANARY = "canary"  # served beside production (TF Serving label ``canary``) while it soaks
    PRODUCTION = "production"  # the served version (holds the ``production`` alias)
    ARCHIVED = "archived"  # was production, replaced by a newer release
    ROLLED_BACK = "rolled_back"  # was production, rolled back from
    REJECTED = "rejected"  # refused by the policy or a human
    SUPERSEDED = "superseded"  # was pending or approved, overtaken by a newer candidate
    DELETED = "deleted"  # files removed by retention; the row stays for the record


class AuditAction(StrEnum):
    """What an audit event records."""

    ALLOCATED = "allocated"
    REGISTERED = "registered"
    FAILED = "failed"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"
    PROMOTED = "promoted"
    ARCHIVED = "archived"
    ROLLED_BACK = "rolled_back"
    DELETED = "deleted"
    FORCE_RELEASED = "force_released"
    CANARY_STARTED = "canary_started"
    CANARY_ABORTED = "canary_aborted"


class AuthorizedAction(StrEnum):
    """What an authorization lets one run do (see :class:`ReleaseAuthorization`)."""

    RELEASE = "release"  # put the version into production
    CANARY = "canary"  # serve the version beside production as the canary
    ROLLBACK = "rollback"  # put the version (a former production) back, leaving ``from_version``


def _enum_column_type(enum: type[StrEnum], name: str) -> sa.Enum:
    # VARCHAR + CHECK rather than a native PostgreSQL ENUM: adding a state later is then an
    # ordinary migration on both databases. Values (not member names) are what is stored.
    return sa.Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


# The registry's own metadata, so that Alembic and the schema checks see exactly the
# registry's tables, whatever other SQLModel tables the process has imported. Named
# constraints keep later batch migrations on SQLite possible.
REGISTRY_METADATA = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class RegistryTable(SQLModel, registry=registry(metadata=REGISTRY_METADATA)):
    """Abstract base of the registry's ``table=True`` classes (binds them to REGISTRY_METADATA)."""


class RegisteredModel(RegistryTable, table=True):
    """One row per model name; ``last_version`` is the version-number allocation counter."""

    __tablename__ = "registered_model"

    name: str = Field(primary_key=True)
    last_version: int = Field(default=0, description="Highest number ever allocated; only grows.")
    created_at: datetime


class ModelVersionBase(SQLModel):
    model_name: str = Field(foreign_key="registered_model.name")
    version: int = Field(description="1, 2, ... per model; never reused, even after a failure.")
    status: VersionStatus = Field(sa_type=_enum_column_type(VersionStatus, "version_status"))
    created_at: datetime
    updated_at: datetime
    path: str | None = Field(default=None, description="The SavedModel folder, <model_store>/<model>/<version>.")
    saved_model_sha256: str | None = None
    files_sha256: str | None = Field(
        default=None,
        description="sha256 over every file of the version but its model card (weights and warm-up included; 'v2:' prefix).",
    )
    metrics: dict[str, Any] | None = Field(
        default=None, sa_type=JSON, description="Held-out metrics of the SavedModel."
    )
    hyperparameters: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    data_fingerprint: str | None = None
    batches: list[str] = Field(default_factory=list, sa_type=JSON, description="File names of the training batches.")
    baseline_version: int | None = Field(default=None, description="Production version it was compared with.")
    baseline_metrics: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    decision: dict[str, Any] | None = Field(
        default=None, sa_type=JSON, description='The release decision, {"outcome", "reasons", ...}.'
    )
    git_commit: str | None = None
    python_version: str | None = None
    tensorflow_version: str | None = None
    keras_version: str | None = None
    flow_run_id: str | None = Field(default=None, description="Prefect flow run that allocated the version.")


class ModelVersion(ModelVersionBase, RegistryTable, table=True):
    __tablename__ = "model_version"
    __table_args__ = (
        sa.UniqueConstraint("model_name", "version"),
        # A model's versions in one status, by number: the candidates a release supersedes,
        # the pending ones, a status-filtered page; a seek, however long the history (0008).
        sa.Index(None, "model_name", "status", "version"),
    )

    id: int | None = Field(default=None, primary_key=True)


class ModelVersionRecord(ModelVersionBase):
    """A model version as read from the registry; a snapshot, not a live row."""

    model_config = ConfigDict(frozen=True)

    id: int


class ModelAlias(RegistryTable, table=True):
    """A named pointer (``production``, ``previous``) to one version of a model.

    The primary key (model_name, alias) is what makes "at most one production version per
    model" a database invariant; the foreign key makes an alias point at an existing version.
    """

    __tablename__ = "model_alias"
    __table_args__ = (
        sa.ForeignKeyConstraint(["model_name", "version"], ["model_version.model_name", "model_version.version"]),
    )

    model_name: str = Field(primary_key=True)
    alias: str = Field(primary_key=True)
    version: int
    updated_at: datetime


class AuditEventBase(SQLModel):
    model_name: str = Field(index=True)
    version: int = Field(description="The version the event is about (whose status changed).")
    action: AuditAction = Field(sa_type=_enum_column_type(AuditAction, "audit_action"))
    from_version: int | None = Field(
        default=None, description="Production before the change (promote, rollback; a canary's production)."
    )
    to_version: int | None = Field(
        default=None, description="Production after the change (promote, rollback); a canary event's canary."
    )
    actor: str = Field(description="Who: 'policy' for the automatic path, a person's name otherwise.")
    reason: str
    flow_run_id: str | None = None
    created_at: datetime


class AuditEvent(AuditEventBase, RegistryTable, table=True):
    """Append-only: the store only inserts, and database triggers refuse UPDATE and DELETE."""

    __tablename__ = "audit_event"
    __table_args__ = (
        sa.ForeignKeyConstraint(["model_name", "version"], ["model_version.model_name", "model_version.version"]),
        # The events about one version ("was it ever promoted?", its newest event, its page),
        # and a model's newest event of one action (MAX(id)): seeks, however long the log (0008).
        sa.Index(None, "model_name", "version"),
        sa.Index(None, "model_name", "action", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)


class AuditEventRecord(AuditEventBase):
    """An audit event as read from the registry."""

    model_config = ConfigDict(frozen=True)

    id: int


class ModelLockBase(SQLModel):
    model_name: str
    holder: str = Field(description="Who holds it: actor and flow run or process, with a unique suffix.")
    purpose: str = Field(description="What it is held for, e.g. 'release of version 3'.")
    acquired_at: datetime
    expires_at: datetime = Field(description="When another holder may take it over; the holder's heartbeat moves it on.")
    host: str | None = Field(default=None, description="Host name of the holder's process; None in rows older than migration 0006.")
    pid: int | None = Field(default=None, description="The holder's process id on ``host``.")
    process_started: int | None = Field(
        default=None,
        sa_type=sa.BigInteger,  # clock ticks since boot pass 2**31 after about 250 days up at 100 Hz
        description="The holder's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), so that "
        "a reused pid is not taken for the holder; None where /proc is missing.",
    )


class ModelLock(ModelLockBase, RegistryTable, table=True):
    """A lease on one model's serving switch: releases and rollbacks of a model never interleave.

    The primary key makes taking the lease a single INSERT that at most one process wins. The
    holder's process (host, pid, start time) is recorded so that a holder that died can be
    replaced at once; the lease also expires unless its holder renews it, for a holder this
    machine cannot see.
    """

    __tablename__ = "model_lock"

    model_name: str = Field(primary_key=True)


class LockRecord(ModelLockBase):
    """A model lock as read from the registry, held or left behind by a holder that is gone
    (``model_name`` is a model, or ``"*models.config*"``, the lock of TF Serving's config file)."""

    model_config = ConfigDict(frozen=True)


class PostedMessageBase(SQLModel):
    model_name: str
    version: int = Field(description="The version the message is about.")
    channel: str = Field(description="Slack channel id (C...), as chat.postMessage returned it.")
    ts: str = Field(description="The message's Slack timestamp; with the channel, what chat.update needs.")
    text: str = Field(description="The fallback text as posted.")
    blocks: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON, description="The Block Kit blocks as posted.")
    posted_at: datetime


class PostedMessage(PostedMessageBase, RegistryTable, table=True):
    """Where the approval request of a version was posted in Slack, and what it showed.

    A newer candidate supersedes a pending one; the older request must then lose its buttons,
    and chat.update replaces a whole message, so both its place and its content are kept. In the
    registry, so that every machine running a nightly or the Slack receiver sees the same record.
    """

    __tablename__ = "posted_message"
    __table_args__ = (
        sa.ForeignKeyConstraint(["model_name", "version"], ["model_version.model_name", "model_version.version"]),
    )

    model_name: str = Field(primary_key=True)
    version: int = Field(primary_key=True)


class PostedMessageRecord(PostedMessageBase):
    """A posted message as read from the registry."""

    model_config = ConfigDict(frozen=True)


class CanaryReleaseBase(SQLModel):
    model_name: str
    version: int = Field(description="The canary version (status ``canary``, alias ``canary``).")
    previous_status: VersionStatus = Field(
        sa_type=_enum_column_type(VersionStatus, "version_status"),
        description="Its status before the canary, which an abort restores.",
    )
    started_at: datetime
    soak_until: datetime = Field(description="When it has soaked long enough to be promoted.")
    actor: str = Field(description="Who started it.")
    reason: str
    flow_run_id: str | None = Field(default=None, description="Prefect flow run that started it.")


class CanaryRelease(CanaryReleaseBase, RegistryTable, table=True):
    """The running canary of a model: one row per model while a canary soaks.

    The primary key (model_name) makes "one canary per model at a time" a database invariant;
    the foreign key makes it point at an existing version. Written and removed together with
    the version's status and the ``canary`` alias, in one transaction.
    """

    __tablename__ = "canary_release"
    __table_args__ = (
        sa.ForeignKeyConstraint(["model_name", "version"], ["model_version.model_name", "model_version.version"]),
    )

    model_name: str = Field(primary_key=True, foreign_key="registered_model.name")


class CanaryRecord(CanaryReleaseBase):
    """A running canary as read from the registry (or as it was when it ended)."""

    model_config = ConfigDict(frozen=True)


class MonitorAlarmBase(SQLModel):
    model_name: str
    kind: str = Field(description='What is wrong, e.g. "blind" (the metrics cannot be read).')
    raised_at: datetime
    message: str = Field(sa_type=sa.Text, description="What was said when it was raised.")


class MonitorAlarm(MonitorAlarmBase, RegistryTable, table=True):
    """A monitoring alarm that is up: one row per model and kind, so that the watch says it once.

    Not model-version state (no audit event): it only remembers that something was announced,
    until it is cleared. The primary key makes raising it a single INSERT that one caller wins.
    """

    __tablename__ = "monitor_alarm"

    model_name: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)


class MonitorAlarmRecord(MonitorAlarmBase):
    """A raised monitoring alarm as read from the registry."""

    model_config = ConfigDict(frozen=True)


class AuthorizationBase(SQLModel):
    model_name: str
    action: AuthorizedAction = Field(sa_type=_enum_column_type(AuthorizedAction, "authorized_action"))
    version: int = Field(description="The version released or started as canary; the target of a rollback.")
    from_version: int | None = Field(
        default=None, description="A rollback's production version, the only one it may leave; None otherwise."
    )
    force: bool = Field(default=False, description="A release of a rejected version (a forced release).")
    actor: str = Field(
        description="Who authorised it, as the party that wrote the row authenticated them: "
        "'slack:<user id>' (the Slack receiver) or 'cli:<OS account>' (the command line)."
    )
    reason: str
    slack_channel: str | None = Field(default=None, description="For a Slack click: the id of the channel of the message clicked.")
    slack_message_ts: str | None = Field(default=None, description="For a Slack click: that message's ts.")


class AuthorizationGrant(AuthorizationBase):
    """What a human authorises one run to do; the input of ``grant_authorization`` and
    ``approve_and_authorize`` (:mod:`registry.authorizations`)."""

    model_config = ConfigDict(frozen=True)


class ReleaseAuthorization(AuthorizationBase, RegistryTable, table=True):
    """One human's authorization of one release, canary or rollback, used at most once.

    Written by whoever authenticated the human (the Slack receiver after its checks, the command
    line for its OS account) before the run starts; the run takes only its ``id``, reads who
    acts and why from here, claims it (``flow_run_id``) and uses it up (``used_at``) in the
    transaction of the change it authorised. Not an audit event: the change's own events carry
    the actor, reason and flow run.
    """

    __tablename__ = "release_authorization"

    id: str = Field(primary_key=True, description="Unguessable token; the ``authorization`` parameter of a release or rollback run.")
    granted_at: datetime
    flow_run_id: str | None = Field(default=None, description="The flow run that claimed it; None until one did.")
    used_at: datetime | None = Field(
        default=None, description="When the change it authorised was recorded (in the same transaction); None while unused."
    )


class AuthorizationRecord(AuthorizationBase):
    """An authorization as read from the registry."""

    model_config = ConfigDict(frozen=True)

    id: str
    granted_at: datetime
    flow_run_id: str | None = None
    used_at: datetime | None = None


class AcceptedBatchBase(SQLModel):
    model_name: str
    name: str = Field(description="The batch's file name in the model's accepted/ folder.")
    sha256: str = Field(description="Hex SHA-256 of the file's bytes, computed when it was accepted.")
    rows: int = Field(sa_type=sa.BigInteger, description="Data rows in the file (a CSV's header not counted).")
    accepted_at: datetime = Field(
        description="When it was accepted; for a batch accepted before migration 0009, its file's modification time."
    )


class AcceptedBatch(AcceptedBatchBase, RegistryTable, table=True):
    """One accepted data batch of a model: what the nightly's fingerprint and training window use,
    so that old batch files are never read again to know their hash or size.

    Written once, when the batch is accepted (never changed: an accepted batch is never
    replaced). Not model-version state: no audit event.
    """

    __tablename__ = "accepted_batch"

    model_name: str = Field(primary_key=True)
    name: str = Field(primary_key=True)


class BatchRecord(AcceptedBatchBase):
    """An accepted batch as read from the registry."""

    model_config = ConfigDict(frozen=True)
