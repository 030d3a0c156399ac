"""When the nightly retrain fires: the last and the next time of the configured cron, without Prefect.

``tfrelease serve`` gives Prefect the cron of ``schedule`` (see :mod:`deployments.schedule`),
and Prefect's scheduler creates the runs; this answers "when was the last one due, when is the
next" for ``tfrelease status`` from the settings alone, with ``cronsim`` (a small cron library,
Prefect's own dependency; importing Prefect to ask it would cost seconds). The two agree but on
the night clocks go forward: a time inside the skipped hour is shown one hour late (03:00 for
02:00), where Prefect 3.8.8 runs it one hour early (tests/deployments/test_schedule.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from core.settings import ScheduleSettings


class NightlyTimes(NamedTuple):
    """The nightly's last due time before a moment and its next one after it (timezone-aware,
    in the schedule's time zone)."""

    previous: datetime
    next: datetime


def nightly_times(schedule: ScheduleSettings, now: datetime) -> NightlyTimes:
    """The times ``schedule.cron`` (read in ``schedule.timezone``) fires last before and next after ``now``.

    Args:
        schedule: the configured nightly schedule.
        now: timezone-aware.

    Raises:
        ValueError: the cron expression is not valid (e.g. hour 25); the message says which
            part, as cronsim reports it. ``now`` is naive.
    """
    if now.tzinfo is None:
        raise ValueError("nightly_times needs a timezone-aware time")
    local = now.astimezone(ZoneInfo(schedule.timezone))
    try:
        return NightlyTimes(
            previous=next(CronSim(schedule.cron, local, reverse=True)),
            next=next(CronSim(schedule.cron, local)),
        )
    except CronSimError as error:
        raise ValueError(f"schedule.cron {schedule.cron!r} is not a valid cron expression: {error}") from None
