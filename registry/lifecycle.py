"""The version lifecycle: allowed status moves, the status sets and alias names built on them.

Pure; no database. The store (:mod:`registry.store`) enforces these rules in every write;
tasks read the sets (which versions have files, which are superseded by a newer candidate,
which may become a canary) instead of spelling out statuses themselves.
"""

from __future__ import annotations

from collections.abc import Mapping

from registry.errors import IllegalTransition
from registry.models import VersionStatus as S

PRODUCTION = "production"
"""Alias of the version TF Serving serves as ``stable``; at most one per model (primary key)."""
PREVIOUS = "previous"
"""Alias of the version that was production before the current one: the rollback target."""
CANARY = "canary"
"""Alias of the version served beside production as TF Serving's ``canary`` while it soaks;
at most one per model, set and removed together with its ``canary_release`` row."""

ALLOWED: Mapping[S, frozenset[S]] = {
    S.REGISTERING: frozenset({S.REGISTERED, S.FAILED}),
    S.REGISTERED: frozenset({S.PENDING_APPROVAL, S.CANARY, S.PRODUCTION, S.REJECTED, S.SUPERSEDED, S.DELETED}),
    S.PENDING_APPROVAL: frozenset({S.APPROVED, S.CANARY, S.REJECTED, S.SUPERSEDED, S.PRODUCTION}),
    S.APPROVED: frozenset({S.CANARY, S.PRODUCTION, S.REJECTED, S.SUPERSEDED}),
    # Back to the status it had before (an abort) or released; never deleted while it soaks.
    S.CANARY: frozenset({S.PRODUCTION, S.REGISTERED, S.PENDING_APPROVAL, S.APPROVED}),
    S.PRODUCTION: frozenset({S.ARCHIVED, S.ROLLED_BACK}),
    S.ARCHIVED: frozenset({S.PRODUCTION, S.DELETED}),
    S.ROLLED_BACK: frozenset({S.PRODUCTION, S.DELETED}),
    S.REJECTED: frozenset({S.PRODUCTION, S.DELETED}),
    S.SUPERSEDED: frozenset({S.PRODUCTION, S.DELETED}),
    S.FAILED: frozenset({S.DELETED}),
    S.DELETED: frozenset(),
}
"""Status -> the statuses it may move to (including the force-only and abort-only moves below)."""

FORCE_ONLY: frozenset[tuple[S, S]] = frozenset({(S.REJECTED, S.PRODUCTION)})
"""Moves allowed only as a forced release (a human overriding a rejection)."""

CANARY_SOURCES: frozenset[S] = frozenset({S.REGISTERED, S.PENDING_APPROVAL, S.APPROVED})
"""Statuses a version may start a canary from, and so the statuses an aborted canary returns to."""

CANARY_ABORT_ONLY: frozenset[tuple[S, S]] = frozenset((S.CANARY, status) for status in CANARY_SOURCES)
"""Moves allowed only as a canary abort, back to the status recorded when the canary started:
registering, approving or asking for approval must not take a soaking version out of canary."""

HAS_FILES: frozenset[S] = frozenset(
    {
        S.REGISTERED,
        S.PENDING_APPROVAL,
        S.APPROVED,
        S.CANARY,
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
version promoted to production, moves every older one of these to ``superseded``. A running
canary is not one of them: a newer candidate does not supersede it."""


def is_allowed(current: S, target: S, *, force: bool = False, canary_abort: bool = False) -> bool:
    """Whether ``current -> target`` is allowed (``force`` unlocks the FORCE_ONLY moves,
    ``canary_abort`` the CANARY_ABORT_ONLY ones)."""
    return (
        target in ALLOWED[current]
        and (force or (current, target) not in FORCE_ONLY)
        and (canary_abort or (current, target) not in CANARY_ABORT_ONLY)
    )


def check_transition(
    model: str, version: int, current: S, target: S, *, force: bool = False, canary_abort: bool = False
) -> None:
    """Refuse a move the lifecycle does not allow; return None when it is allowed.

    Raises:
        IllegalTransition: ``current -> target`` is not in ALLOWED, is force-only and
            ``force`` is False, or is abort-only and ``canary_abort`` is False; the message
            names model, version and both statuses.
    """
    if target not in ALLOWED[current]:
        raise IllegalTransition(model, version, current.value, target.value)
    if (current, target) in FORCE_ONLY and not force:
        raise IllegalTransition(
            model, version, current.value, target.value, "allowed only as a forced release (force=True)"
        )
    if (current, target) in CANARY_ABORT_ONLY and not canary_abort:
        raise IllegalTransition(
            model, version, current.value, target.value, "allowed only by aborting the canary (abort_canary)"
        )
