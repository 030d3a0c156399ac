"""What every command of the command line shares: the Rich consoles, the --model option and small helpers.

The helpers load the settings, check a model name, name the CLI user in the audit log and look
versions up in the registry; each failure is printed as one red line and ends the command with
a non-zero exit code. Nothing here imports TensorFlow or Prefect (the listing commands and
``rollback`` stay light); the registry is imported inside the helpers that open it.
"""

from __future__ import annotations

import logging
import os
import pwd
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console

from core.settings import ConfigError, Settings, get_settings

if TYPE_CHECKING:
    from registry.models import ModelVersionRecord
    from registry.store import RegistryStore

# Tables are wider than the 80 columns Rich assumes when output is not a terminal. No markup:
# messages carry bracketed text ("[pid 4242, ...]", "[stuck_registering]") that Rich would eat;
# colour is given with style=.
console = Console(width=None if Console().is_terminal else 140, markup=False)
errors = Console(stderr=True, markup=False, soft_wrap=True)  # one message, one line

ModelOption = Annotated[Optional[str], typer.Option("--model", "-m", help="Model name (default: the configured default_model).")]


def load_settings() -> Settings:
    """The tfrelease settings (``tfrelease.toml``, ``TFRELEASE_*``), checked.

    Raises:
        typer.Exit: code 2 when the configuration is invalid; the error (naming the key) is printed.
    """
    try:
        return get_settings()
    except ConfigError as error:
        errors.print(f"{error}", style="red", highlight=False)
        raise typer.Exit(2) from None


def model_name(settings: Settings, model: str | None) -> str:
    """``model``, or the configured default model when None, once it is known to be configured.

    Raises:
        typer.Exit: code 2 when no such model is configured; the error is printed.
    """
    name = model or settings.default_model
    try:
        settings.model(name)
    except ConfigError as error:
        errors.print(f"{error}", style="red")
        raise typer.Exit(2) from None
    return name


def actor() -> str:
    """Who acts, as the audit log records a command line user: ``cli:<account>``, the OS account
    this process runs as (its effective uid), or ``cli:uid:<n>`` for a uid without one.

    Not ``getpass.getuser()``: it returns $LOGNAME (or $USER) when set, which anyone can set.
    """
    uid = os.geteuid()
    try:
        return f"cli:{pwd.getpwuid(uid).pw_name}"
    except KeyError:  # e.g. a container running with a uid missing from /etc/passwd
        return f"cli:uid:{uid}"


def open_store(settings: Settings) -> RegistryStore:
    """The registry at ``settings.registry_url`` (its schema migrated if needed).

    Raises:
        typer.Exit: code 1 when the database cannot be reached or the URL is unusable; one line
            names the URL (its password hidden) and the database's own reason.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, OperationalError

    from registry.store import RegistryStore

    try:
        return RegistryStore.open(settings.registry_url)
    except (OperationalError, ArgumentError, ValueError) as error:
        try:
            shown = make_url(settings.registry_url).render_as_string(hide_password=True)
        except ArgumentError:
            shown = "the configured database_url"
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        errors.print(f"cannot open the registry at {shown}: {reason}", style="red", highlight=False)
        raise typer.Exit(1) from None


def version_or_exit(store: RegistryStore, name: str, version: int) -> ModelVersionRecord:
    """The registry's record of ``name`` version ``version``.

    Raises:
        typer.Exit: code 1 when the registry has no such version; the error is printed.
    """
    from registry.errors import RegistryError

    try:
        return store.get_version(name, version)
    except RegistryError as error:
        errors.print(f"{error}", style="red", highlight=False)
        raise typer.Exit(1) from None


class _WithoutTraceback(logging.Formatter):
    """Formats a record as ``formatter`` does, leaving its traceback out (the record itself is
    not changed: the run's log and any other handler still get the traceback)."""

    def __init__(self, formatter: logging.Formatter | None):
        super().__init__()
        self.inner = formatter or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        copy = logging.makeLogRecord(record.__dict__)
        copy.exc_info, copy.exc_text, copy.stack_info = None, None, None
        return self.inner.format(copy)


def tracebacks_to_the_run_log_only() -> None:
    """Keep Prefect's tracebacks off this terminal: a flow run that fails in this process logs
    its trace to the run's log on the Prefect server (the UI shows it), and the command prints
    one line saying why. Call after Prefect is imported (it sets up its logging then)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, _WithoutTraceback):
            handler.setFormatter(_WithoutTraceback(handler.formatter))
