"""The Slack receiver as a process: the Bolt app of ``slackbot`` wired to the release and rollback flows.

``slackbot`` sits below the flows (the flows announce through it), so the flows a click runs in
this process are handed to it from here, the top of the house.
"""

from __future__ import annotations

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


def build_app(settings: Settings, *, use_prefect: bool | None = None, verify_token: bool = False) -> App:
    """The receiver's Bolt app with the release and rollback flows (see ``slackbot.app.build_app``).

    Raises:
        core.settings.ConfigError: Slack is not configured for receiving.
        slack_bolt.error.BoltError: ``verify_token`` and Slack refused the token.
    """
    return app.build_app(settings, flows=FLOWS, use_prefect=use_prefect, verify_token=verify_token)


def serve(settings: Settings) -> None:
    """Run the receiver until interrupted (see ``slackbot.app.serve``).

    Raises:
        core.settings.ConfigError, slack_bolt.error.BoltError: as :func:`build_app`.
    """
    app.serve(settings, FLOWS)
