"""The store's unit of work: one session and one transaction per public call, checked at the entry.

:class:`StoreBase` holds the engine and opens the transaction every public method of
:class:`registry.store.RegistryStore` runs in: commit when the block ends, roll back on any
error, and a constraint the database refuses (``IntegrityError``) turned into
:class:`~registry.errors.VersionConflict`. :func:`require` refuses, before any transaction,
what would become an anonymous or unexplained audit event; :func:`utc_now` is the store's clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from registry.errors import VersionConflict


class StoreBase:
    """The engine of one registry database and the transaction each store call runs in.

    Base of the parts :class:`registry.store.RegistryStore` is made of; not used on its own.
    """

    def __init__(self, engine: Engine) -> None:
        """Use ``engine`` as is; its schema must already be at head (see ``RegistryStore.open``)."""
        self._engine = engine

    @property
    def engine(self) -> Engine:
        """The underlying engine (for tests and schema checks; do not write through it)."""
        return self._engine

    def close(self) -> None:
        """Close the store's pooled connections; the store can still be used afterwards."""
        self._engine.dispose()

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """One session, one transaction: commit when the block ends, roll back on any error.

        Objects stay readable after the commit (``expire_on_commit=False``), so a method can
        build its read model from them.

        Raises:
            VersionConflict: the database refused a write (a unique, primary or foreign key
                constraint); nothing was changed.
        """
        try:
            with Session(self._engine, expire_on_commit=False) as session, session.begin():
                yield session
        except IntegrityError as error:
            raise VersionConflict(f"the registry refused a conflicting write: {error.orig}") from error


def utc_now() -> datetime:
    """The current time, timezone-aware UTC: the timestamp of every row and event a call writes."""
    return datetime.now(UTC)


def require(**values: str) -> None:
    """Refuse at the entry what would otherwise become an anonymous or unexplained event.

    Raises:
        ValueError: a value is not a string or is blank; the message names every such argument.
    """
    empty = [name for name, value in values.items() if not isinstance(value, str) or not value.strip()]
    if empty:
        raise ValueError(f"registry: {', '.join(empty)} must be a non-empty string")
