"""Which process holds something, and whether that process still exists.

A :class:`ProcessIdentity` names a process by host, pid and start time, so that a pid the
kernel has handed to a new process since is not taken for the old one. :func:`is_gone` says
True only when it can be told for sure from this machine; anything it cannot see (another
host, no ``/proc``) counts as alive, and whoever asks falls back on its own time limit.
Linux ``/proc`` is read where it exists; no other side effects.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
# Fields of /proc/<pid>/stat after the command name, which is in parentheses and may itself
# hold spaces and parentheses: field 3 (state) is the first, field 22 (start time) the 20th.
_STATE = 0
_START_TICKS = 19
ZOMBIE = "Z"


@dataclass(frozen=True)
class ProcessIdentity:
    """One process: ``host`` (``socket.gethostname()``), ``pid``, and ``started``, its start
    time in clock ticks since the machine booted (field 22 of ``/proc/<pid>/stat``), or None
    where there is no ``/proc`` to read it from."""

    host: str
    pid: int
    started: int | None


def this_process() -> ProcessIdentity:
    """The identity of the calling process (read afresh: a forked child gets its own)."""
    pid = os.getpid()
    fields = _stat_fields(pid)
    return ProcessIdentity(socket.gethostname(), pid, None if fields is None else int(fields[_START_TICKS]))


def is_gone(identity: ProcessIdentity) -> bool:
    """Whether the process ``identity`` names no longer exists; never waits.

    True only when that is certain: it ran on this host and there is no process with its pid,
    or the process with that pid now started at another time (the pid was reused), or it is
    a zombie (it has ended; only its exit status waits for its parent). A process on another
    host, one this process may not signal (``PermissionError``: it exists), and anything that
    cannot be read give False.
    """
    if identity.host != socket.gethostname() or identity.pid <= 0:  # pid 0 or -1 would signal a group
        return False
    try:
        os.kill(identity.pid, 0)  # signal 0: only checks that the pid exists
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, owned by another user: /proc still tells a reused pid or a zombie
    fields = _stat_fields(identity.pid)
    if fields is None:
        return False
    if fields[_STATE] == ZOMBIE:
        return True
    return identity.started is not None and int(fields[_START_TICKS]) != identity.started


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3 onwards of ``/proc/<pid>/stat``, or None when it cannot be read (no ``/proc``,
    or the process ended meanwhile)."""
    try:
        text = (PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return fields if len(fields) > _START_TICKS else None
