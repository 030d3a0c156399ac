"""Messages of the watch and of canary releases: Block Kit content and limits, the "Approve as
canary" button, and the announcements posted to the Slack stand-in, a blind spell once per spell
through a real SQLite registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.orchestrator import FlowRunRef
from core.settings import Settings, SlackSettings
from registry.store import RegistryStore
from slackbot.messages import approval_request_message
from slackbot.monitoring import (
    canary_aborted_message,
    canary_promoted_message,
    canary_soaked_message,
    canary_started_message,
    monitor_rollback_message,
    monitoring_blind_message,
    monitoring_restored_message,
)
from slackbot.payloads import ActionValue, ClickedMessage, RollbackValue, SlackMessage
from slackbot.watch import (
    announce_blind,
    announce_canary_aborted,
    announce_canary_promoted,
    announce_canary_result,
    announce_canary_soaked,
    announce_canary_started,
    announce_monitor_rollback,
    announce_restored,
    announce_watch,
    announce_watch_failure,
)
from tasks.canary import CanaryResult
from tests.slack.standin import SlackStandin
from tests.slack.test_notify import CHANNEL, TOKEN, assert_within_slack_limits, block, buttons, request

RUN = FlowRunRef(id="0b6e-run", name="watchful-otter", url="http://prefect.local/runs/flow-run/0b6e-run")
GRAPH = "http://prometheus.local/graph?g0.expr=rate(x[5m])&g0.tab=0"
ERROR_RATE = (
    'sum(rate(:tensorflow:serving:request_count{model_name="digits",status!="OK"}[5m]))'
    ' / sum(rate(:tensorflow:serving:request_count{model_name="digits"}[5m]))'
)
QUERIES = {"error rate": ERROR_RATE, "requests": 'sum(increase(:tensorflow:serving:request_count{model_name="digits"}[5m]))'}
ROWS = [
    ("error rate", "7.20%", "<= 5.00%", "5m", "breach"),
    ("requests", "1843", ">= 100", "5m", "ok"),
]
REASONS = ["error rate 7.20% over 5m is above the 5.00% allowed (1843 requests)"]
SOAK_UNTIL = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
LONG = "x" * 5000


def texts(message: SlackMessage) -> str:
    """Every text of the message's blocks, joined: what a reader sees."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(message.blocks)
    return "\n".join(found)


def all_messages() -> list[SlackMessage]:
    return [
        monitor_rollback_message("digits", 3, 2, reasons=REASONS, rows=ROWS, queries=QUERIES, graph_url=GRAPH, run=RUN),
        monitoring_blind_message("digits", reason="Prometheus unreachable", queries=QUERIES, graph_url=GRAPH, run=RUN),
        monitoring_restored_message("digits", run=RUN),
        canary_started_message("digits", 4, 3, actor="slack:UALICE", soak_until=SOAK_UNTIL, run=RUN),
        canary_aborted_message(
            "digits", 4, 3, actor="monitor", reasons=REASONS, rows=ROWS, queries=QUERIES, graph_url=GRAPH, run=RUN
        ),
        canary_promoted_message("digits", 4, 3, actor="monitor", summary="digits canary version 4 promoted", run=RUN),
        canary_soaked_message("digits", 4, run=RUN),
    ]


# ---------------------------------------------------------------- builders


def test_monitor_rollback_shows_figures_queries_graph_and_run():
    message = monitor_rollback_message("digits", 3, 2, reasons=REASONS, rows=ROWS, queries=QUERIES, graph_url=GRAPH, run=RUN)

    assert message.blocks[0]["type"] == "header"
    assert message.blocks[0]["text"]["text"] == "digits: monitoring rolled back v3 to v2"
    assert message.text.startswith("digits: monitoring rolled back v3 to v2 (by monitor): error rate 7.20%")
    what = block(message.blocks, ":what")["text"]["text"]
    assert "v2 is in production again" in what and "*By* monitor" in what and "watchful-otter" in what
    assert REASONS[0] in block(message.blocks, ":reasons")["text"]["text"]

    figures = block(message.blocks, ":figures")["text"]["text"]
    assert figures.startswith("```") and figures.endswith("```")
    lines = figures.strip("`").splitlines()
    assert lines[0].split() == ["figure", "measured", "threshold", "window", "verdict"]
    assert lines[1].split() == ["error", "rate", "7.20%", "&lt;=", "5.00%", "5m", "breach"]  # escaped for mrkdwn
    assert lines[2].split() == ["requests", "1843", "&gt;=", "100", "5m", "ok"]
    assert lines[1].index("7.20%") == lines[2].index("1843")  # columns line up

    query = block(message.blocks, ":query:0")["text"]["text"]
    assert query.startswith("*PromQL: error rate*\n```") and query.endswith("```")
    assert 'status!="OK"' in query and "[5m]" in query
    assert "increase(" in block(message.blocks, ":query:1")["text"]["text"]
    links = " ".join(e["text"] for e in block(message.blocks, ":links")["elements"])
    assert "<http://prometheus.local/graph?g0.expr=rate(x[5m])&g0.tab=0|Prometheus graph>" in links
    assert "<http://prefect.local/runs/flow-run/0b6e-run|Prefect flow run>" in links
    assert not buttons(message.blocks)


def test_blind_and_restored_say_what_automation_does_meanwhile():
    blind = monitoring_blind_message(
        "digits", reason="fewer than 100 requests in 5m (12)", queries=QUERIES, graph_url=GRAPH, run=None
    )
    assert blind.text.startswith("monitoring blind for digits: fewer than 100 requests in 5m (12)")
    assert "nothing will be rolled back automatically until it sees data again" in blind.text.lower()
    why = block(blind.blocks, ":why")["text"]["text"]
    assert "fewer than 100 requests in 5m (12)" in why and "rolled back automatically until the watch sees data again" in why
    assert 'model_name="digits"' in block(blind.blocks, ":query:0")["text"]["text"]
    assert "Prometheus graph" in block(blind.blocks, ":links")["elements"][0]["text"]
    assert not any(b.get("block_id", "").endswith(":figures") for b in blind.blocks)  # nothing was measured

    restored = monitoring_restored_message("digits", run=RUN)
    assert restored.text == "monitoring sees data for digits again: automatic rollback is back on"
    assert "watchful-otter" in block(restored.blocks, ":what")["text"]["text"]


def test_canary_messages_name_versions_actor_and_next_steps():
    started = canary_started_message("digits", 4, 3, actor="slack:UALICE", soak_until=SOAK_UNTIL, run=RUN)
    assert started.text == "digits v4 canary started beside production v3 by <@UALICE>, soaking until 2026-11-22 10:00 UTC"
    what = block(started.blocks, ":what")["text"]["text"]
    assert "`canary` label" in what and f"<!date^{int(SOAK_UNTIL.timestamp())}^" in what and "<@UALICE>" in what
    naive = canary_started_message("digits", 4, 3, actor="cli:bob", soak_until=SOAK_UNTIL.replace(tzinfo=None), run=None)
    assert naive.text.endswith("soaking until 2026-11-22 10:00 UTC")  # a naive time is UTC

    aborted = canary_aborted_message(
        "digits", 4, 3, actor="monitor", reasons=REASONS, rows=ROWS, queries=QUERIES, graph_url=GRAPH, run=RUN
    )
    assert aborted.text.startswith("digits v4 canary aborted; production stays on v3 (by monitor): error rate 7.20%")
    assert "production v3 never changed" in block(aborted.blocks, ":what")["text"]["text"]
    assert "7.20%" in block(aborted.blocks, ":figures")["text"]["text"]
    assert 'status!="OK"' in block(aborted.blocks, ":query:0")["text"]["text"]
    assert "Prometheus graph" in texts(aborted) and not buttons(aborted.blocks)

    soaked = canary_soaked_message("digits", 4, run=RUN)
    assert "`tfrelease canary promote --model digits`" in block(soaked.blocks, ":what")["text"]["text"]
    assert soaked.text.startswith("digits v4 canary soaked clean") and "tfrelease canary promote --model digits" in soaked.text


def test_canary_promoted_has_a_roll_back_button_to_the_previous_version():
    promoted = canary_promoted_message("digits", 4, 3, actor="monitor", summary="digits canary version 4 promoted", run=RUN)
    assert promoted.text == "digits v4 promoted to production after its canary soak by monitor"
    assert "digits canary version 4 promoted" in block(promoted.blocks, ":what")["text"]["text"]
    (roll_back,) = buttons(promoted.blocks).values()
    assert roll_back["action_id"] == "rollback" and roll_back["style"] == "danger" and "confirm" in roll_back
    assert RollbackValue.parse(roll_back["value"]) == RollbackValue(model="digits", from_version=4, to_version=3)

    first = canary_promoted_message("digits", 4, None, actor="monitor", summary="promoted", run=None)
    assert not buttons(first.blocks)


def test_every_message_fits_slack_limits_is_json_and_has_a_fallback():
    for message in all_messages():
        assert_within_slack_limits(message.blocks)
        assert json.loads(json.dumps(message.model_dump())) == message.model_dump()
        assert 0 < len(message.text) <= 3000 and "digits" in message.text


def test_long_inputs_are_cut_and_code_blocks_stay_closed():
    rows = [(f"figure {i} " + "y" * 100, "1" * 60, "<" * 60, "5m", "breach") for i in range(300)]
    queries = {f"query {i} " + "n" * 300: "rate(x[5m]) > 0 and <" * 400 for i in range(20)}
    reasons = [f"reason {i} " + "z" * 300 for i in range(50)]
    model = "m" * 100
    messages = [
        monitor_rollback_message(model, 123456789, 123456788, reasons=reasons, rows=rows, queries=queries, graph_url=LONG, run=RUN),
        monitoring_blind_message(model, reason=LONG, queries=queries, graph_url=LONG, run=RUN),
        canary_started_message(model, 123456789, 3, actor=LONG, soak_until=SOAK_UNTIL, run=RUN),
        canary_aborted_message(
            model, 123456789, 3, actor="monitor", reasons=reasons, rows=rows, queries=queries, graph_url=GRAPH, run=RUN
        ),
        canary_promoted_message(model, 123456789, 123456788, actor="monitor", summary=LONG, run=RUN),
        canary_soaked_message(model, 123456789, run=RUN),
    ]
    for message in messages:
        assert_within_slack_limits(message.blocks)
        assert 0 < len(message.text) <= 3000
    rollback = messages[0]
    figures = block(rollback.blocks, ":figures")["text"]["text"]
    assert figures.endswith("more rows```") and figures.count("```") == 2
    queries_shown = [b for b in rollback.blocks if ":query:" in b.get("block_id", "")]
    assert len(queries_shown) == 6
    assert all(b["text"]["text"].endswith("…```") for b in queries_shown)  # cut inside the fence, not through it
    assert [e["text"] for e in block(rollback.blocks, ":links")["elements"]] == [
        "Prometheus graph: link too long for Slack", f"<{RUN.url}|Prefect flow run>", "14 more queries not shown",
    ]
    assert "more" in block(rollback.blocks, ":reasons")["text"]["text"]


# ---------------------------------------------------------------- the Approve as canary button


def test_the_approval_request_offers_a_canary_only_when_there_is_production():
    with_production = approval_request_message(request())
    by_id = buttons(with_production.blocks)
    assert list(by_id) == ["approve", "approve_canary", "reject"]
    canary = by_id["approve_canary"]
    assert canary["text"]["text"] == "Approve as canary" and "style" not in canary
    assert ActionValue.parse(canary["value"]) == ActionValue(model="digits", version=3)
    assert_within_slack_limits(with_production.blocks)

    first = approval_request_message(request(production=None))
    assert list(buttons(first.blocks)) == ["approve", "reject"]


# ---------------------------------------------------------------- announcing, through the stand-in


def slack_settings(settings: Settings, standin: SlackStandin | None) -> Settings:
    slack = SlackSettings(bot_token=TOKEN, channel=CHANNEL, api_base_url=standin.base_url) if standin else SlackSettings()
    return settings.model_copy(update={"slack": slack})


@pytest.fixture
def store(tmp_path: Path):
    store = RegistryStore.open(f"sqlite:///{tmp_path / 'registry.db'}")
    yield store
    store.close()


def started(**changes: Any) -> CanaryResult:
    fields: dict[str, Any] = dict(
        model="digits", version=4, production_version=3, outcome="started", actor="slack:UALICE", soak_until=SOAK_UNTIL
    )
    return CanaryResult(**{**fields, **changes})


def posted(standin: SlackStandin) -> list[dict[str, Any]]:
    return [call.body for call in standin.calls("chat.postMessage")]


def test_a_blind_spell_is_announced_once_and_again_after_the_watch_sees_data(settings, slack_standin, store):
    on = slack_settings(settings, slack_standin)

    def blind(reason: str) -> bool:
        return announce_blind(on, store, "digits", reason=reason, queries=QUERIES, graph_url=GRAPH, run=RUN)

    assert blind("Prometheus unreachable: connection refused") is True
    assert [blind("Prometheus unreachable: connection refused") for _ in range(3)] == [False] * 3
    assert blind("no data for 5m") is False  # still the same spell
    (first,) = posted(slack_standin)
    assert first["channel"] == CHANNEL and first["text"].startswith("monitoring blind for digits: Prometheus unreachable")
    assert store.get_alarm("digits", "blind") is not None

    assert announce_restored(on, store, "digits", run=RUN) is True
    assert announce_restored(on, store, "digits", run=RUN) is False  # nothing left to clear
    assert store.get_alarm("digits", "blind") is None
    assert posted(slack_standin)[1]["text"] == "monitoring sees data for digits again: automatic rollback is back on"

    assert blind("no data for 5m") is True  # a new spell
    assert [body["text"].split(":")[0] for body in posted(slack_standin)] == [
        "monitoring blind for digits", "monitoring sees data for digits again", "monitoring blind for digits",
    ]
    assert announce_blind(on, store, "other", reason="no data", queries={}, graph_url=None, run=None) is True  # per model
    assert len(posted(slack_standin)) == 4


def test_with_slack_off_nothing_is_sent_and_nothing_raises(settings, slack_standin, store):
    off = slack_settings(settings, None)
    assert announce_blind(off, store, "digits", reason="no data", queries=QUERIES, graph_url=None, run=None) is False
    assert store.get_alarm("digits", "blind") is not None  # the spell is recorded all the same
    assert announce_restored(off, store, "digits", run=None) is False
    assert announce_monitor_rollback(off, "digits", 3, 2, reasons=REASONS, rows=ROWS, queries=QUERIES, graph_url=None, run=None) is False
    assert announce_canary_soaked(off, "digits", 4, run=None) is False
    assert slack_standin.requests == []


def test_a_slack_failure_or_an_unbuildable_message_is_logged_not_raised(settings, slack_standin, caplog):
    on = slack_settings(settings, slack_standin)
    slack_standin.fail("chat.postMessage", "channel_not_found")
    assert announce_canary_soaked(on, "digits", 4, run=None) is False
    slack_standin.reset()
    # A model name this long pushes a block id past Slack's 255: the builder raises, the announcer logs.
    assert announce_canary_soaked(on, "m" * 300, 4, run=None) is False
    assert "could not build the Slack message" in caplog.text and slack_standin.requests == []


def test_the_watch_and_canary_announcements_reach_the_channel(settings, slack_standin):
    on = slack_settings(settings, slack_standin)
    assert announce_monitor_rollback(on, "digits", 3, 2, reasons=REASONS, rows=ROWS, queries=QUERIES, graph_url=GRAPH, run=RUN)
    assert announce_canary_started(on, started(actor="cli:bob"), origin=None, run=None)
    assert announce_canary_aborted(
        on, "digits", 4, 3, actor="monitor", reasons=REASONS, rows=ROWS, queries=QUERIES, graph_url=GRAPH, run=RUN
    )
    assert announce_canary_promoted(on, "digits", 5, 3, actor="monitor", summary="promoted", run=RUN)
    assert announce_canary_soaked(on, "digits", 6, run=RUN)

    bodies = posted(slack_standin)
    assert [body["channel"] for body in bodies] == [CHANNEL] * 5
    starts = [
        "digits: monitoring rolled back v3 to v2 (by monitor): error rate 7.20%",
        "digits v4 canary started beside production v3 by cli:bob, soaking until 2026-11-22 10:00 UTC",
        "digits v4 canary aborted; production stays on v3 (by monitor): error rate 7.20%",
        "digits v5 promoted to production after its canary soak by monitor",
        "digits v6 canary soaked clean",
    ]
    assert all(body["text"].startswith(start) for body, start in zip(bodies, starts, strict=True))
    for body in bodies:
        assert_within_slack_limits(body["blocks"])


def test_a_canary_started_by_a_click_is_shown_in_the_clicked_request(settings, slack_standin):
    on = slack_settings(settings, slack_standin)
    base = approval_request_message(request(version=4))
    origin = ClickedMessage(channel="C0CLICKED", ts="1700000000.000100", user="UALICE", message=base)

    assert announce_canary_started(on, started(soak_until=SOAK_UNTIL.replace(tzinfo=None)), origin=origin, run=None)

    assert posted(slack_standin) == []
    (update,) = [call.body for call in slack_standin.calls("chat.update")]
    assert (update["channel"], update["ts"]) == ("C0CLICKED", "1700000000.000100")
    assert update["text"] == "digits v4 approved as canary by <@UALICE>, soaking until 2026-11-22 10:00 UTC"
    assert not buttons(update["blocks"]) and update["blocks"][0]["text"]["text"] == "digits v4 started as a canary"
    status = update["blocks"][1]["text"]["text"]
    assert "*Approved as canary* by <@UALICE>, soaking until <!date^" in status and "`canary` label" in status
    assert_within_slack_limits(update["blocks"])


def test_canary_command_results_are_announced(settings, slack_standin):
    on = slack_settings(settings, slack_standin)
    aborted = started(outcome="aborted", actor="cli:bob", soak_until=None)
    promoted = started(outcome="promoted", actor="cli:bob", soak_until=None, production_version=4, previous_version=3)

    assert announce_canary_result(on, aborted, run=None, reason="latency looks off")
    assert announce_canary_result(on, promoted, run=None)

    abort, promote = posted(slack_standin)
    assert abort["text"].startswith("digits v4 canary aborted; production stays on v3 (by cli:bob): latency looks off")
    assert promote["text"] == "digits v4 promoted to production after its canary soak by cli:bob"
    (roll_back,) = buttons(promote["blocks"]).values()
    assert RollbackValue.parse(roll_back["value"]) == RollbackValue(model="digits", from_version=4, to_version=3)


# ---------------------------------------------------------------- a watch's outcome


def outcome(outcome: str, action: str = "nothing", **changes: Any):
    from tasks.monitoring import Check, Figures, Target, Verdict
    from tasks.watch import WatchOutcome

    figures = Figures(
        target=Target(model="digits", label="stable", version=3), window="5m", requests=1843, errors=133,
        latency_p99_ms=None, queries={"errors": ERROR_RATE}, measured_at=SOAK_UNTIL,
    )
    checks = [Check(figure=row[0], measured=row[1], threshold=row[2], window=row[3], verdict=row[4]) for row in ROWS]
    verdict = Verdict(
        outcome=outcome, checks=checks, reasons=REASONS if outcome != "blind" else ["Prometheus unreachable"],
        figures=figures if outcome != "blind" else None,
    )
    return WatchOutcome(
        model="digits", watched="production version 3 (stable)", verdict=verdict, action=action, graph_url=GRAPH,
        detail="; ".join(verdict.reasons), **changes,
    )


def test_a_watch_outcome_is_announced_as_what_it_did(settings, slack_standin, store):
    on = slack_settings(settings, slack_standin)

    assert announce_watch(on, store, outcome("blind"), run=RUN) is True
    assert announce_watch(on, store, outcome("blind"), run=RUN) is False
    assert announce_watch(on, store, outcome("healthy"), run=RUN) is True  # sees again
    assert announce_watch(on, store, outcome("healthy"), run=RUN) is False  # nothing to say
    assert announce_watch(on, store, outcome("breach", "rolled_back", from_version=3, to_version=2), run=RUN) is True
    assert announce_watch(on, store, outcome("breach", "canary_aborted", from_version=4, to_version=3), run=RUN) is True
    assert announce_watch(on, store, outcome("healthy", "canary_promoted", from_version=3, to_version=4), run=RUN) is True
    assert announce_watch(on, store, outcome("healthy", "canary_soaked", from_version=4), run=RUN) is True

    texts_posted = [body["text"] for body in posted(slack_standin)]
    assert texts_posted[0].startswith("monitoring blind for digits: Prometheus unreachable")
    assert texts_posted[1] == "monitoring sees data for digits again: automatic rollback is back on"
    assert texts_posted[2].startswith("digits: monitoring rolled back v3 to v2 (by monitor): " + REASONS[0])
    assert texts_posted[3].startswith("digits v4 canary aborted; production stays on v3 (by monitor)")
    assert texts_posted[4] == "digits v4 promoted to production after its canary soak by monitor"
    assert texts_posted[5].startswith("digits v4 canary soaked clean")
    assert len(texts_posted) == 6
    rollback = posted(slack_standin)[2]["blocks"]
    assert "7.20%" in block(rollback, ":figures")["text"]["text"] and 'status!="OK"' in block(rollback, ":query:0")["text"]["text"]


def test_a_failed_watch_is_posted_once_per_spell_but_a_blind_one_is_not(settings, slack_standin, store):
    from tasks.watch import MonitoringBlind

    on = slack_settings(settings, slack_standin)
    assert announce_watch_failure(on, store, "digits", MonitoringBlind("monitoring blind for digits: no data"), run=RUN) is False
    assert announce_watch_failure(on, store, "digits", RuntimeError("query refused"), run=RUN) is True
    # The same broken query a minute later: not posted again.
    assert announce_watch_failure(on, store, "digits", RuntimeError("query refused"), run=RUN) is False
    (failed,) = posted(slack_standin)
    assert failed["text"].startswith("digits: watch watchful-otter failed") and "RuntimeError: query refused" in failed["text"]
    assert store.get_alarm("digits", "watch_failed") is not None