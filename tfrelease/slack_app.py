"""The Slack receiver as a process: the Bolt app of ``slackbot`` wired to the release and rollback flows.

``slackbot`` sits below the flows (the flows announce through it), so the flows a click runs in
this process are handed to it from here, the top of the house.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from slack_bolt import App

from core.orchestrator import RELEASE, ROLLBACK
from core.settings import Settings
from slackbot import app
from slackbot.receiver import FlowLoaders


def _release_flow() -> Any:
    from flows.release import release

    return release


def _rollback_flow() -> Any:
    from flows.rollback import rollback

    return rollback


# Loaded on the first click that runs a flow here: importing Prefect's flow machinery costs
# about 2 s, and most clicks start a deployment run on the server instead.
FLOWS: FlowLoaders = {RELEASE: _release_flow, ROLLBACK: _rollback_flow}

# The receiver's own loggers: start-up, one line per click, refusals, failures.
RECEIVER_LOGGERS = ("slackbot", "tfrelease")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    """Send the receiver's loggers (:data:`RECEIVER_LOGGERS`) to stderr at ``level``, whatever
    the root logger is set to.

    Importing Prefect configures the root logger (WARNING, its own handlers), after which
    ``logging.basicConfig`` does nothing, and replacing the root's handlers would break
    Prefect's. So these loggers get their own handler and stop propagating (their lines are
    not printed twice); Prefect's later reconfigurations leave loggers they do not name alone.
    Calling it again changes the level and adds no second handler.
    """
    for name in RECEIVER_LOGGERS:
        named = logging.getLogger(name)
        named.setLevel(level)
        named.propagate = False
        if not any(getattr(handler, "tfrelease_receiver", False) for handler in named.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
            handler.tfrelease_receiver = True  # type: ignore[attr-defined]  # marks ours, for the check above
            named.addHandler(handler)


def build_app(settings: Settings, *, use_prefect: bool | None = None, verify_token: bool = False) -> App:
    """The receiver's Bolt app with the release and rollback flows (see ``slackbot.app.build_app``).

    Raises:
        core.settings.ConfigError: Slack is not configured for receiving.
        slack_bolt.error.BoltError: ``verify_token`` and Slack refused the token.
    """
    return app.build_app(settings, flows=FLOWS, use_prefect=use_prefect, verify_token=verify_token)


def serve(settings: Settings) -> None:
    """Run the receiver until interrupted (see ``slackbot.app.serve``), its loggers at INFO
    (see :func:`configure_logging`): "listening on http://host:port/slack/events" (or "Socket
    Mode") at start, then one line per click.

    Raises:
        core.settings.ConfigError, slack_bolt.error.BoltError: as :func:`build_app`.
    """
    configure_logging()
    app.serve(settings, FLOWS)
