"""RegistryStore: the one entry to the registry, the only reader and writer of its tables.

Every public method is one database transaction. A method that changes a version writes its
audit event(s) (actor, reason, flow run, UTC time) in that same transaction, so the registry
never shows a change without its record or a record without its change. Methods return
read models (``ModelVersionRecord``, ``AuditEventRecord``, ``CanaryRecord``,
``MonitorAlarmRecord``, ``PostedMessageRecord``, ``AuthorizationRecord``, ``BatchRecord``), never live rows.

Writers of one model are serialized: each write transaction first locks the model's
``registered_model`` row (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite every
transaction already holds the database write lock from ``BEGIN IMMEDIATE``).

The methods live with their job and are combined here:

- :mod:`registry.registration`: ``allocate_version``, ``complete_registration``, ``mark_failed``;
- :mod:`registry.releases`: ``request_approval``, ``approve``, ``reject``, ``promote``,
  ``rollback``, ``mark_deleted``;
- :mod:`registry.canaries`: ``start_canary``, ``get_canary``, ``abort_canary``;
- :mod:`registry.authorizations`: ``grant_authorization``, ``approve_and_authorize``,
  ``claim_authorization``, ``get_authorization``, ``list_authorizations``;
- :mod:`registry.reads`: ``get_version``, ``list_versions``, ``get_alias``, ``list_models``,
  ``list_events``, ``was_promoted``, ``latest_event``;
- :mod:`registry.browse`: paged reads (``versions_page``, ``events_page``, ``production_timeline``, ...);
- :mod:`registry.leases`: ``model_lock`` (with a heartbeat; a dead holder is taken over at once), ``list_locks``, ``release_lock``;
- :mod:`registry.posted_messages`: ``record_posted_message``, ``get_posted_message``;
- :mod:`registry.monitor_alarms`: ``raise_alarm``, ``clear_alarm``, ``get_alarm``;
- :mod:`registry.batches`: ``record_batch``, ``list_batches``;
- :mod:`registry.transactions`: ``engine``, ``close`` and the transaction each call runs in.
"""

from __future__ import annotations

from registry.authorizations import Authorizations
from registry.batches import AcceptedBatches
from registry.browse import Browse
from registry.canaries import Canaries
from registry.database import create_registry_engine, upgrade_schema
from registry.leases import Leases
from registry.monitor_alarms import MonitorAlarms
from registry.posted_messages import PostedMessages
from registry.reads import Reads
from registry.registration import Registration
from registry.releases import Releases


class RegistryStore(
    Registration, Releases, Canaries, Authorizations, Reads, Browse, Leases, PostedMessages, MonitorAlarms, AcceptedBatches
):
    """Model versions, aliases, the audit log, canaries, model locks, posted Slack messages,
    monitoring alarms and accepted data batches of one registry database. Open one with :meth:`open`;
    ``RegistryStore(engine)`` uses an engine whose schema is already at head."""

    @classmethod
    def open(cls, url: str) -> RegistryStore:
        """Connect to the registry at ``url`` and upgrade its schema to the newest migration.

        Safe to call again on the same database, and from several processes at once.

        Returns:
            A store on that database; :meth:`close` releases its connections.

        Raises:
            ValueError: the URL is neither SQLite nor PostgreSQL.
            sqlalchemy.exc.OperationalError: the database cannot be reached.
        """
        engine = create_registry_engine(url)
        try:
            upgrade_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)
