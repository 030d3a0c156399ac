"""Typed registry errors: every refusal of the registry store is a :class:`RegistryError`."""

from __future__ import annotations


class RegistryError(Exception):
    """Base of all registry errors; nothing was changed when one is raised."""


class VersionNotFound(RegistryError):
    """The model has no such version (or the model does not exist)."""

    def __init__(self, model: str, version: int) -> None:
        super().__init__(f"model {model!r} has no version {version}")
        self.model = model
        self.version = version


class AliasNotFound(RegistryError):
    """The model has no such alias (e.g. no ``production`` version to roll back from)."""

    def __init__(self, model: str, alias: str) -> None:
        super().__init__(f"model {model!r} has no {alias!r} version")
        self.model = model
        self.alias = alias


class IllegalTransition(RegistryError):
    """The version's status does not allow the requested move (see ``registry.lifecycle``)."""

    def __init__(self, model: str, version: int, current: str, target: str, detail: str | None = None) -> None:
        message = f"model {model!r} version {version} cannot go from {current} to {target}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.model = model
        self.version = version
        self.current = current
        self.target = target


class VersionConflict(RegistryError):
    """A concurrent or duplicate write broke a database constraint; retrying may succeed."""


class ModelLocked(RegistryError):
    """Another release or rollback of the model holds its lock; nothing was changed."""

    def __init__(
        self, model: str, holder: str, purpose: str, since: str, waited_seconds: float, host: str | None = None
    ) -> None:
        where = f" on host {host}" if host else ""  # None: a lease taken before the registry recorded hosts
        super().__init__(
            f"model {model!r} is locked by {holder}{where} ({purpose}) since {since}; "
            f"gave up after waiting {waited_seconds:.0f} s — try again when it finishes"
        )
        self.model = model
        self.holder = holder
        self.host = host


class LeaseLost(RegistryError):
    """A holder no longer holds the lease it was working under; it stopped before writing."""

    def __init__(self, name: str, holder: str, why: str) -> None:
        super().__init__(
            f"{holder} lost its lock of {name!r} ({why}); stopped before writing: "
            "another holder may be doing the same work, run it again once that one has finished"
        )
        self.name = name
        self.holder = holder


class CanaryRunning(RegistryError):
    """The model already has a canary running; a second one cannot start until it is aborted
    or promoted."""

    def __init__(self, model: str, running: int) -> None:
        super().__init__(f"model {model!r} already has a canary running: version {running}; abort or promote it first")
        self.model = model
        self.running = running


class StaleCanary(RegistryError):
    """The running canary is not the one the caller judged (it was replaced meanwhile)."""

    def __init__(self, model: str, expected: int, running: int) -> None:
        super().__init__(f"model {model!r} runs canary version {running}, not version {expected} as expected")
        self.model = model
        self.expected = expected
        self.running = running


class AuthorizationRefused(RegistryError):
    """An authorization does not let this run or change act: unknown, granted for another
    change or actor, claimed by another flow run, or used already. The message says which."""

    def __init__(self, authorization: str, detail: str) -> None:
        # The token's first characters only: messages reach logs and Slack.
        super().__init__(f"authorization {authorization[:8]}… refused: {detail}")
        self.authorization = authorization
