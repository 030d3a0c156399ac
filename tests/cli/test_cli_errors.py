"""Bad input gets one clear line, never a traceback and never a secret: configuration errors, a
TOML syntax error, an unreachable registry, and messages whose bracketed text must survive."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from core.settings import get_settings
from registry.store import RegistryStore
from tfrelease.cli import app

runner = CliRunner()

SECRETS = {
    "TFRELEASE_SLACK__BOT_TOKEN": "xoxb-MARKER-BOT",
    "TFRELEASE_SLACK__SIGNING_SECRET": "MARKER-SIGNING",
    "TFRELEASE_SLACK__APP_TOKEN": "xapp-MARKER-APP",
    "TFRELEASE_DATABASE_URL": "postgresql+psycopg://bob:MARKER-PASSWORD@127.0.0.1:1/registry",
}


def invoke(*arguments: str):
    get_settings.cache_clear()
    try:
        return runner.invoke(app, list(arguments))
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    "bad",
    [
        {"TFRELEASE_DEFAULT_MODEL": "nope"},  # a model-level check reports the whole configuration as its input
        {"TFRELEASE_SLACK__PORT": "not-a-port"},
        {"TFRELEASE_SLACK__CHANEL": "#typo"},
        {"TFRELEASE_SLACK__BOT_TOKEN": "12"},  # the secret key itself is valid here, but must never be echoed
    ],
)
def test_a_configuration_error_names_the_key_and_never_prints_a_secret(settings, monkeypatch, bad):
    for key, value in {**SECRETS, **bad}.items():
        monkeypatch.setenv(key, value)
    for command in (["versions"], ["rollback"], ["doctor"]):
        result = invoke(*command)
        assert "MARKER" not in result.output, result.output
        assert "Traceback" not in result.output
    if "TFRELEASE_SLACK__BOT_TOKEN" not in bad:
        assert result.exit_code == 2 and "invalid tfrelease configuration" in result.output
        key = next(iter(bad)).removeprefix("TFRELEASE_").lower().replace("__", ".")
        assert (key if key != "default_model" else "default_model 'nope'") in result.output


def test_a_toml_syntax_error_names_the_file_line_and_column(settings, tmp_path):
    (tmp_path / "tfrelease.toml").write_text('home = "h"\n[models.digits\n')
    result = invoke("versions")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "tfrelease.toml is not valid TOML: Expected ']' at the end of a table declaration (at line 2, column 15)"
    ]


@pytest.mark.parametrize("command", [["versions"], ["doctor"], ["rollback"], ["history"]])
def test_an_unreachable_registry_is_one_line_naming_the_url_without_its_password(settings, monkeypatch, command):
    monkeypatch.setenv("TFRELEASE_DATABASE_URL", SECRETS["TFRELEASE_DATABASE_URL"])
    result = invoke(*command)
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith("cannot open the registry at postgresql+psycopg://bob:***@127.0.0.1:1/registry: ")
    assert "MARKER" not in line


def test_bracketed_text_in_messages_is_printed_as_written(settings):
    store = RegistryStore.open(settings.registry_url)
    store.allocate_version("digits", actor="test", reason="an export that never finished")
    result = invoke("doctor")
    assert result.exit_code == 1
    assert "[stuck_registering] digits v1:" in result.output


def test_an_unreachable_object_store_is_one_line_with_the_sdks_reason(settings, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.prefect_server import free_port

    env = os.environ | {
        "TFRELEASE_HOME": str(settings.home),
        "TFRELEASE_MODEL_STORE_URL": "s3://tfrelease-nowhere/store",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "AWS_ACCESS_KEY_ID": "tfrelease-test",
        "AWS_SECRET_ACCESS_KEY": "tfrelease-test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = subprocess.run(
        [str(Path(sys.executable).with_name("tfrelease")), "doctor"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot reach the object store: EndpointConnectionError" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr and "tfrelease-test" not in done.stdout + done.stderr


EXIT_PROBE = """
import atexit, sys
import typer
from tfrelease import cli

class Teardown:
    def __del__(self):
        print("torn down", flush=True)

kept = Teardown()  # freed only by the interpreter's teardown

@cli.app.command("probe")
def probe(fail: bool = False) -> None:
    atexit.register(print, "exit hook ran", flush=True)  # as Prefect and the GX worker do in a command
    print("command output", end="")  # unflushed when the command ends
    if fail:
        raise RuntimeError("a bug")
    raise typer.Exit(3)

sys.argv = ["tfrelease", "probe", *sys.argv[1:]]
cli.main()
"""


def test_the_console_script_runs_the_exit_hooks_keeps_the_code_and_skips_the_teardown(tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", EXIT_PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert done.stdout.splitlines() == ["command outputexit hook ran"]  # flushed, hook run, no teardown
    # A command that dies of an uncaught exception keeps Python's ordinary exit.
    done = subprocess.run([sys.executable, "-c", EXIT_PROBE, "--fail"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "RuntimeError: a bug" in done.stderr
    assert done.stdout.splitlines() == ["command outputexit hook ran", "torn down"]
