"""How tfrelease reaches Prefect: a server at PREFECT_API_URL, or a temporary one it starts.

These defaults must be in the environment before Prefect reads its settings, so they are
applied before any flow module is imported; a user's own PREFECT_* values always win.
"""

from __future__ import annotations

import os
from pathlib import Path

from tfrelease.settings import Settings

# Prefect's temporary server needs 12-16 s to start on a 2-core machine; its default
# start-up timeout (20 s) leaves too little margin.
EPHEMERAL_STARTUP_TIMEOUT_SECONDS = "90"


def configure_prefect(settings: Settings) -> None:
    """Set Prefect's defaults for an embedded run: state under ``<home>/prefect``, no telemetry.

    Side effect: creates the Prefect home folder (the temporary server does not start, and only
    times out, when its database folder is missing).
    """
    os.environ.setdefault("PREFECT_HOME", str((settings.home / "prefect").resolve()))
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_TIMEOUT_SECONDS)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up notices


def reachable_prefect_api(timeout_seconds: float = 2.0) -> str | None:
    """The configured Prefect API URL if its server answers ``/health`` now, else None.

    Reads ``PREFECT_API_URL`` from the environment or the active Prefect profile; no URL
    means no server (this never starts a temporary one).
    """
    import httpx

    url = os.environ.get("PREFECT_API_URL") or _profile_api_url()
    if not url:
        return None
    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=timeout_seconds).raise_for_status()
    except httpx.HTTPError:
        return None
    return url


def _profile_api_url() -> str | None:
    # Importing Prefect costs about a second, so it is only asked when a profiles file
    # could set the URL at all (the rollback command must stay fast).
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser()
    if not profiles.is_file() or "PREFECT_API_URL" not in profiles.read_text():
        return None
    from prefect.settings import get_current_settings

    return get_current_settings().api.url
