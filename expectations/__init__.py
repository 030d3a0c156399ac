"""Expectation suites: one Great Expectations 1.x suite JSON per dataset, the data contract.

Each expectation carries ``notes`` saying why it exists (GX renders them in Data Docs).
"""

from __future__ import annotations

from pathlib import Path

SUITES_DIR = Path(__file__).resolve().parent


class SuiteNotFound(FileNotFoundError):
    """No suite JSON for a name or path; the message names it and where it was looked for."""


def suite_path(name: str | Path) -> Path:
    """Resolve a model config's ``suite`` to a suite JSON file (no file is read).

    ``name`` is either a bundled suite name (``"digits"`` -> ``expectations/digits.json``) or a
    path to a JSON file (anything containing a path separator or ending in ``.json``, or a
    ``Path``), relative to the current directory or absolute; ``~`` is expanded.

    Returns:
        The absolute path of an existing file.

    Raises:
        SuiteNotFound: no such bundled suite, or the path is not an existing file.
    """
    text = str(name)
    looks_like_path = isinstance(name, Path) or "/" in text or "\\" in text or text.endswith(".json")
    if looks_like_path:
        path = Path(text).expanduser().resolve()
        if not path.is_file():
            raise SuiteNotFound(f"expectation suite {text!r} not found: {path} is not a file")
        return path
    path = SUITES_DIR / f"{text}.json"
    if not text or not path.is_file():
        known = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.json"))) or "none"
        raise SuiteNotFound(
            f"expectation suite {text!r} not found: looked for {path} (bundled suites: {known}); "
            "name a bundled suite or give a path to a suite JSON file"
        )
    return path
