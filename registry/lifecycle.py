"""The version lifecycle: allowed status moves, the status sets and alias names built on them.

Pure; no database. The store (:mod:`registry.store`) enforces these rules in every write;
tasks read the sets (which versions have files, which are superseded by a newer candidate)
instead of spelling out statuses themselves.
"""

from __future__ import annotations

from collections.abc import Mapping

from registry.errors import IllegalTransition
from registry.models import VersionStatus as S

PRODUCTION = "production"
"""Alias of the version TF Serving serves as ``stable``; at most one per model (primary key)."""
PREVIOUS = "previous"
"""Alias of the version that was production before the current one: the rollback target."""

ALLOWED: Mapping[S, frozenset[S]] = {
    S.REGISTERING: frozenset({S.REGISTERED, S.FAILED}),
    S.REGISTERED: frozenset({S.PENDING_APPROVAL, S.PRODUCTION, S.REJECTED, S.SUPERSEDED, S.DELETED}),
    S.PENDING_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.SUPERSEDED, S.PRODUCTION}),
    S.APPROVED: frozenset({S.PRODUCTION, S.REJECTED, S.SUPERSEDED}),
    S.PRODUCTION: frozenset({S.ARCHIVED, S.ROLLED_BACK}),
    S.ARCHIVED: frozenset({S.PRODUCTION, S.DELETED}),
    S.ROLLED_BACK: frozenset({S.PRODUCTION, S.DELETED}),
    S.REJECTED: frozenset({S.PRODUCTION, S.DELETED}),
    S.SUPERSEDED: frozenset({S.PRODUCTION, S.DELETED}),
    S.FAILED: frozenset({S.DELETED}),
    S.DELETED: frozenset(),
}
"""Status -> the statuses it may move to (including the force-only moves below)."""

FORCE_ONLY: frozenset[tuple[S, S]] = frozenset({(S.REJECTED, S.PRODUCTION)})
"""Moves allowed only as a forced release (a human overriding a rejection)."""

HAS_FILES: frozenset[S] = frozenset(
    {
        S.REGISTERED,
        S.PENDING_APPROVAL,
        S.APPROVED,
        S.PRODUCTION,
        S.ARCHIVED,
        S.ROLLED_BACK,
        S.REJECTED,
        S.SUPERSEDED,
    }
)
"""Statuses whose version folder should exist (registration completed, not yet deleted)."""

SUPERSEDABLE: frozenset[S] = frozenset({S.PENDING_APPROVAL, S.APPROVED})
"""Statuses of a candidate awaiting release: a newer candidate asking for approval, or a newer
version promoted to production, moves every older one of these to ``superseded``."""


def is_allowed(current: S, target: S, *, force: bool = False) -> bool:
    """Whether ``current -> target`` is allowed (``force`` unlocks the FORCE_ONLY moves)."""
    return target in ALLOWED[current] and (force or (current, target) not in FORCE_ONLY)


def check_transition(model: str, version: int, current: S, target: S, *, force: bool = False) -> None:
    """Refuse a move the lifecycle does not allow; return None when it is allowed.

    Raises:
        IllegalTransition: ``current -> target`` is not in ALLOWED, or is force-only and
            ``force`` is False; the message names model, version and both statuses.
    """
    if target not in ALLOWED[current]:
        raise IllegalTransition(model, version, current.value, target.value)
    if (current, target) in FORCE_ONLY and not force:
        raise IllegalTransition(
            model, version, current.value, target.value, "allowed only as a forced release (force=True)"
        )
