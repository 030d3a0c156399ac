"""The ``tfrelease`` command line: the Typer app, with each command registered from its module.

The commands live in ``tfrelease.registry_commands`` (read and tidy the registry),
``tfrelease.release_commands`` (release, approve, reject, rollback) and
``tfrelease.run_commands`` (retrain, serve, slack-app, data drop), ``tfrelease.watch_commands``
(watch, canary status|abort|promote), ``tfrelease.status_commands`` (status, compare),
``tfrelease.ui_commands`` (ui, the release dashboard);
``tfrelease.console`` holds what they share and ``tfrelease.json_output`` what ``--json``
prints. Those modules never import this one. Listing commands read the registry only: they
import neither TensorFlow nor Prefect.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys

import typer

from tfrelease import registry_commands, release_commands, run_commands, status_commands, ui_commands, watch_commands

app = typer.Typer(help="Nightly retraining and safe release of TensorFlow models to TF Serving.", no_args_is_help=True)

data_app = typer.Typer(help="Batches of training data.", no_args_is_help=True)
data_app.command("drop")(run_commands.data_drop)
app.add_typer(data_app, name="data")

app.command()(run_commands.retrain)
app.command()(status_commands.status)
app.command()(registry_commands.versions)
app.command()(registry_commands.show)
app.command()(registry_commands.history)
app.command()(status_commands.compare)
app.command()(registry_commands.doctor)
app.command()(registry_commands.gc)

db_app = typer.Typer(help="The registry database.", no_args_is_help=True)
db_app.command("upgrade")(registry_commands.db_upgrade)
app.add_typer(db_app, name="db")

app.command()(release_commands.release)
app.command()(release_commands.approve)
app.command()(release_commands.reject)
app.command()(release_commands.rollback)
app.command()(watch_commands.watch)
canary_app = typer.Typer(help="Canary releases: a version serving beside production while it soaks.", no_args_is_help=True)
canary_app.command("status")(watch_commands.canary_status)
canary_app.command("abort")(watch_commands.canary_abort)
canary_app.command("promote")(watch_commands.canary_promote)
app.add_typer(canary_app, name="canary")
app.command()(run_commands.serve)
app.command("slack-app")(run_commands.slack_app)
app.command()(ui_commands.ui)


# The object-store SDKs' own failures (an endpoint that does not answer, missing credentials)
# are not OSError; they are raised from whichever command touched the store first.
_STORE_SDK_MODULES = ("botocore", "aiobotocore", "aiohttp", "google.auth", "google.api_core", "gcsfs")


def main() -> None:
    """The ``tfrelease`` console script: :data:`app`, with an object store that cannot be reached
    (or refuses the credentials) told in one line naming the SDK's reason, exit code 1, instead
    of a traceback; and without the interpreter's teardown once every exit hook has run."""
    atexit.register(_leave_after_exit_hooks)  # registered first, so it runs after every other hook
    try:
        app()
    except SystemExit as done:
        _exit_code.append(done.code)
        raise
    except Exception as error:
        if not type(error).__module__.startswith(_STORE_SDK_MODULES):
            raise
        reason = " ".join(str(error).split()) or type(error).__name__
        typer.secho(f"cannot reach the object store: {type(error).__name__}: {reason}", fg="red", err=True)
        _exit_code.append(1)
        raise SystemExit(1) from None


_exit_code: list[object] = []  # the command's SystemExit code, once it ended with one


def _leave_after_exit_hooks() -> None:
    """End the process now with the command's exit code, skipping the interpreter's teardown.

    Tearing down an interpreter that imported TensorFlow takes 1.5-3 s (measured after a night:
    freeing every module and TensorFlow's C++ runtime) and does nothing a user needs: Prefect's
    services have drained, the temporary server and the GX worker have stopped and every file
    was written and closed by then (non-daemon threads are joined, then the exit hooks run, the
    one registered first last). A command that ended with an uncaught exception keeps the
    ordinary exit.
    """
    if not _exit_code or not isinstance(_exit_code[0], int | None):
        return
    logging.shutdown()  # the one hook registered before this one, when logging was imported
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a reader that went away, a closed stream
            stream.flush()
    os._exit(_exit_code[0] or 0)
