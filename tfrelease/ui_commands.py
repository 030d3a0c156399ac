"""The ``ui`` command: serve the release dashboard (``dashboard``) on ui.host:ui.port.

Imports neither TensorFlow nor Great Expectations. ``tfrelease.cli`` registers the command.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from tfrelease.console import console, load_settings, open_store


def ui(
    host: Annotated[Optional[str], typer.Option(help="Address to listen on (default: ui.host).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port to listen on (default: ui.port).", min=1, max=65535)] = None,
) -> None:
    """Serve the read-only release dashboard until interrupted: models, versions, the production
    timeline, the audit log and quarantined batches, in a browser.

    It has no login: put it behind the company's SSO proxy and set ui.base_url to the address
    people reach it at. The registry's schema is brought up to date first, as by every command;
    the dashboard itself only reads.
    """
    settings = load_settings()
    open_store(settings).close()  # reachable and migrated, or one red line and exit 1
    import matplotlib.figure  # noqa: F401 - drawing's import cost is paid here, not by the first version page
    import uvicorn

    from dashboard.app import create_app
    from registry.reader import RegistryReader

    listen_host = host or settings.ui.host
    listen_port = port or settings.ui.port
    reader = RegistryReader.open(settings.registry_url)
    app = create_app(settings, reader)
    console.print(f"release dashboard on http://{listen_host}:{listen_port}/ (Ctrl-C stops it)", highlight=False)
    try:
        # A port that cannot be bound: uvicorn logs one line saying why and exits with status 3.
        uvicorn.run(app, host=listen_host, port=listen_port, log_level="warning", server_header=False)
    except KeyboardInterrupt:
        pass
    finally:
        reader.close()
    console.print("release dashboard stopped")
