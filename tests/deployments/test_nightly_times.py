"""When the nightly was last due and is next due, from the settings alone (``tfrelease status``),
in agreement with Prefect's own scheduler on ordinary nights."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from core.settings import ScheduleSettings
from deployments.nightly_times import nightly_times


def test_the_default_schedule_is_due_at_two_utc_every_night():
    times = nightly_times(ScheduleSettings(), datetime(2026, 3, 6, 12, 0, tzinfo=UTC))

    assert times == (datetime(2026, 3, 6, 2, 0, tzinfo=UTC), datetime(2026, 3, 7, 2, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    ("cron", "zone", "now"),
    [
        ("0 2 * * *", "UTC", datetime(2026, 3, 6, 12, 0, tzinfo=UTC)),
        ("0 4 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, 0, tzinfo=UTC)),  # across the spring change
        ("30 23 * * 1-5", "America/New_York", datetime(2026, 10, 30, 12, 0, tzinfo=UTC)),  # a weekend, then autumn
    ],
)
def test_the_next_time_is_the_one_prefects_scheduler_creates(cron, zone, now):
    from prefect.server.schemas.schedules import CronSchedule

    (prefect_next,) = asyncio.run(CronSchedule(cron=cron, timezone=zone).get_dates(n=1, start=now))

    assert nightly_times(ScheduleSettings(cron=cron, timezone=zone), now).next == prefect_next


def test_a_cron_with_a_bad_field_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match=r"schedule.cron '0 25 \* \* \*' is not a valid cron expression: Bad hour"):
        nightly_times(ScheduleSettings(cron="0 25 * * *"), datetime(2026, 3, 6, tzinfo=UTC))


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        nightly_times(ScheduleSettings(), datetime(2026, 3, 6))
