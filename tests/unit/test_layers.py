"""The house plan holds: the import-linter contracts in pyproject.toml are kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *arguments], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_every_layer_imports_only_from_the_layers_below_and_no_package_has_a_cycle():
    result = lint()
    # On failure import-linter names each offending import chain, e.g. "tasks.release -> slackbot.messages".
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract_and_is_named(tmp_path):
    # A copy of the house with one task that imports a flow: the contract must catch it.
    house = tmp_path / "house"
    for package in ("tfrelease", "dashboard", "deployments", "flows", "slackbot", "tasks", "registry", "expectations", "core"):
        (house / package).mkdir(parents=True)
        (house / package / "__init__.py").write_text("")
    (house / "flows" / "retrain.py").write_text("import tasks.train\n")
    (house / "tasks" / "train.py").write_text("import core.settings\n")
    (house / "tasks" / "report.py").write_text("import flows.retrain\n")
    (house / "core" / "settings.py").write_text("")
    (house / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=house, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(house), "PATH": ""},
    )
    assert result.returncode == 1
    assert "tasks.report -> flows.retrain" in result.stdout
