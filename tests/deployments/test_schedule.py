"""The deployments: names, parameters, concurrency, and when the nightly retrain really runs.

Next run times come from Prefect's own server-side schedule (``CronSchedule.get_dates``,
what its scheduler uses to create runs), fed with the schedule the deployment carries.
No Prefect server is needed: PREFECT_API_URL points at a closed port throughout.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from deployments.schedule import build_deployments, nightly_name, watch_name

UTC = timezone.utc


@pytest.fixture(autouse=True)
def no_prefect_server(monkeypatch: pytest.MonkeyPatch):
    # Building deployments must not talk to a server: any attempt would fail on this port.
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")


def with_schedule(settings, cron: str, tz: str):
    """``settings`` with a nightly schedule."""
    from core.settings import load_settings

    return load_settings(home=settings.home, models=settings.models, schedule={"cron": cron, "timezone": tz})


def by_name(deployments):
    return {d.name: d for d in deployments}


def next_runs(deployment, start: datetime, n: int) -> list[datetime]:
    """The next ``n`` run times of ``deployment``'s single schedule, on or after ``start``, in UTC."""
    from prefect.server.schemas.schedules import CronSchedule

    (schedule,) = deployment.schedules
    server_side = CronSchedule.model_validate(schedule.schedule.model_dump(include={"cron", "timezone", "day_or"}))
    dates = asyncio.run(server_side.get_dates(n=n, start=start))
    return [d.astimezone(UTC) for d in dates]


def test_one_nightly_deployment_per_model_plus_release_and_rollback(settings):
    from core.settings import load_settings

    two_models = load_settings(home=settings.home, models={"digits": {}, "letters": {}})
    deployments = by_name(build_deployments(two_models))

    assert set(deployments) == {"retrain-nightly-digits", "retrain-nightly-letters", "release", "rollback"}
    for model in ("digits", "letters"):
        nightly = deployments[nightly_name(model)]
        assert nightly.flow_name == "retrain"
        assert nightly.parameters == {"model": model}
        assert nightly.concurrency_limit == 1
        assert nightly.concurrency_options.collision_strategy.value == "ENQUEUE"
        assert not nightly.paused
        (schedule,) = nightly.schedules
        assert schedule.active
        assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")

    for name in ("release", "rollback"):
        on_demand = deployments[name]
        assert on_demand.flow_name == name
        assert on_demand.schedules == []
        assert on_demand.parameters == {}
        assert on_demand.concurrency_limit is None
    # Their required parameters are supplied at run time: the schema says which. Who acts is not
    # one of them: it comes from the run's authorization, or is the Prefect UI run itself.
    for name, required in (("release", {"model", "version"}), ("rollback", {"model"})):
        schema = deployments[name]._parameter_openapi_schema
        assert set(schema.required) == required
        assert "authorization" in schema.properties and "actor" not in schema.properties
        assert "prefect-ui:<flow run id>" in deployments[name].description


def test_a_watch_deployment_every_minute_for_each_monitored_model_only(settings):
    from core.settings import load_settings

    monitored = {"monitoring": {"prometheus_url": "http://127.0.0.1:9090"}}
    two_models = load_settings(home=settings.home, models={"digits": monitored, "letters": {}})
    deployments = by_name(build_deployments(two_models))

    assert watch_name("digits") == "watch-digits"
    assert "watch-letters" not in deployments  # nothing to ask Prometheus about
    watch = deployments["watch-digits"]
    assert watch.flow_name == "watch"
    assert watch.parameters == {"model": "digits"}
    (schedule,) = watch.schedules
    assert schedule.active
    assert schedule.schedule.interval == timedelta(seconds=60)
    # A watch still running when the next is due makes that one skip rather than pile up.
    assert watch.concurrency_limit == 1
    assert watch.concurrency_options.collision_strategy.value == "CANCEL_NEW"


def test_default_nightly_runs_at_two_utc(settings):
    nightly = by_name(build_deployments(settings))["retrain-nightly-digits"]

    runs = next_runs(nightly, datetime(2026, 3, 6, 2, 0, tzinfo=UTC), 3)

    assert runs == [datetime(2026, 3, d, 2, 0, tzinfo=UTC) for d in (6, 7, 8)]


def test_start_after_todays_run_gives_tomorrows(settings):
    nightly = by_name(build_deployments(settings))["retrain-nightly-digits"]

    assert next_runs(nightly, datetime(2026, 3, 6, 2, 0, 1, tzinfo=UTC), 1) == [datetime(2026, 3, 7, 2, 0, tzinfo=UTC)]


def test_configured_cron_and_zone_keep_local_time_across_spring_dst(settings):
    # Berlin moves from UTC+1 to UTC+2 on 2026-03-29: 04:00 local stays 04:00 local.
    nightly = by_name(build_deployments(with_schedule(settings, "0 4 * * *", "Europe/Berlin")))["retrain-nightly-digits"]
    assert nightly.schedules[0].schedule.timezone == "Europe/Berlin"

    runs = next_runs(nightly, datetime(2026, 3, 27, 12, 0, tzinfo=UTC), 4)

    assert [r.astimezone(ZoneInfo("Europe/Berlin")).strftime("%m-%d %H:%M") for r in runs] == [
        "03-28 04:00", "03-29 04:00", "03-30 04:00", "03-31 04:00",
    ]
    assert [r.hour for r in runs] == [3, 2, 2, 2]  # UTC


def test_configured_cron_and_zone_keep_local_time_across_autumn_dst(settings):
    # New York moves from UTC-4 to UTC-5 on 2026-11-01; 23:30 local is never ambiguous.
    nightly = by_name(build_deployments(with_schedule(settings, "30 23 * * 1-5", "America/New_York")))[
        "retrain-nightly-digits"
    ]

    runs = next_runs(nightly, datetime(2026, 10, 29, 12, 0, tzinfo=UTC), 4)

    local = [r.astimezone(ZoneInfo("America/New_York")) for r in runs]
    assert [r.strftime("%a %m-%d %H:%M") for r in local] == [
        "Thu 10-29 23:30", "Fri 10-30 23:30", "Mon 11-02 23:30", "Tue 11-03 23:30",
    ]
    assert [r - runs[0] for r in runs[1:]] == [timedelta(days=1), timedelta(days=4, hours=1), timedelta(days=5, hours=1)]


@pytest.mark.parametrize(
    ("cron", "tz", "start", "days"),
    [
        ("0 2 * * *", "Europe/Berlin", datetime(2026, 3, 27, 12, tzinfo=UTC), ["03-28", "03-29", "03-30", "03-31"]),
        ("30 2 * * *", "Europe/Berlin", datetime(2026, 10, 23, 12, tzinfo=UTC), ["10-24", "10-25", "10-26", "10-27"]),
        ("0 2 * * *", "America/New_York", datetime(2026, 3, 6, 12, tzinfo=UTC), ["03-07", "03-08", "03-09", "03-10"]),
        ("30 1 * * *", "America/New_York", datetime(2026, 10, 30, 12, tzinfo=UTC), ["10-31", "11-01", "11-02", "11-03"]),
    ],
)
def test_a_time_inside_the_dst_change_still_runs_exactly_once_a_night(settings, cron, tz, start, days):
    # 02:00-02:59 does not exist on the spring-forward night and 01:00-01:59 (New York) or
    # 02:00-02:59 (Berlin) happens twice on the fall-back night: one run per night all the same.
    nightly = by_name(build_deployments(with_schedule(settings, cron, tz)))["retrain-nightly-digits"]

    runs = next_runs(nightly, start, 4)

    assert [r.astimezone(ZoneInfo(tz)).strftime("%m-%d") for r in runs] == days


def test_the_missing_hour_runs_an_hour_early(settings):
    # Prefect 3.8.8 (croniter) puts a run that falls in the skipped hour one hour *earlier*
    # (01:00 local, still that night), not at 03:00; pinned so an upgrade that changes it shows.
    nightly = by_name(build_deployments(with_schedule(settings, "0 2 * * *", "Europe/Berlin")))["retrain-nightly-digits"]

    runs = next_runs(nightly, datetime(2026, 3, 29, 0, 0, tzinfo=UTC), 1)

    assert runs == [datetime(2026, 3, 29, 0, 0, tzinfo=UTC)]  # 01:00 CET


@pytest.mark.parametrize(("cron", "tz"), [("0 25 * * *", "UTC"), ("0 2 * *", "UTC"), ("0 2 * * *", "Mars/Olympus_Mons")])
def test_bad_cron_or_zone_is_refused_before_serving(settings, cron, tz):
    # By the settings (ConfigError) when they check it, else when the deployments are built.
    from core.settings import ConfigError

    with pytest.raises((ConfigError, ValueError)):
        build_deployments(with_schedule(settings, cron, tz))


def test_building_inside_an_event_loop_returns_deployments_not_coroutines(settings):
    from prefect.deployments.runner import RunnerDeployment

    async def build():
        return build_deployments(settings)

    deployments = asyncio.run(build())

    assert all(isinstance(d, RunnerDeployment) for d in deployments)
