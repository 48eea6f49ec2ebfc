"""The CI gates (issue 22 item 8): ruff and mypy are in the ``dev`` extra, configured in ``pyproject.toml`` and run by
``.ci/run`` after the README's test command (which installs the extra).

The lint tests feed ruff code on standard input under a file name of the repository (``--stdin-filename``), so they
check the repository's configuration, per-file rules included, and write nothing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_dev_extra_pins_a_minimum_version_of_both_tools():
    dev = PYPROJECT["project"]["optional-dependencies"]["dev"]
    for tool in ("ruff", "mypy"):
        pins = [spec for spec in dev if re.match(rf"{tool}\s*>=\s*\d", spec)]
        assert len(pins) == 1, f"no '{tool}>=X' in the dev extra: {dev}"


def test_ci_runs_the_gates_after_the_readme_test_command_and_before_the_build():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]

    def first(prefix: str) -> int:
        found = [number for number, line in enumerate(lines) if line.startswith(prefix)]
        assert found, f"{prefix!r} not in .ci/run"
        return found[0]

    tests, build = first('bash -c "$tests"'), first("python -m build")
    assert tests < first("ruff check") < build
    assert tests < first("mypy") < build


def test_ruff_selects_the_rule_families_the_issue_names():
    lint = PYPROJECT["tool"]["ruff"]["lint"]
    assert {"E", "W", "F", "I", "D", "B", "RUF100"} <= set(lint["select"])
    assert lint["pydocstyle"]["convention"] == "google"
    assert PYPROJECT["tool"]["ruff"]["line-length"] == 120


def test_mypy_checks_the_whole_package_with_typed_signatures():
    mypy = PYPROJECT["tool"]["mypy"]
    assert mypy["files"] == ["vtamiq_metric"]
    assert mypy["disallow_untyped_defs"] is True and mypy["warn_unused_ignores"] is True


def _ruff(source: str, *where: str) -> set[str]:
    """The rule codes ruff reports for ``source`` checked as if it were the repository's file ``where`` (the parts of
    a path that need not exist: ``tests/test_repository_paths.py`` checks the paths the tests cite)."""
    filename = "/".join(where)
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    command = [ruff, "check", "--no-cache", "--output-format", "concise", "--stdin-filename", filename, "-"]
    done = subprocess.run(command, input=source, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert done.returncode in (0, 1), done.stderr
    return set(re.findall(r":\d+:\d+: ([A-Z]+[0-9]+)", done.stdout))


LIBRARY_MODULE = '''"""A module."""

import os
import logging


def shout(words: list[str], counts: list[int]) -> None:
    """Print."""
    print(list(zip(words, counts)))
    try:
        os.remove("x")
    except Exception:
        pass
'''


def test_ruff_reports_what_the_gate_is_for_in_library_code():
    codes = _ruff(LIBRARY_MODULE, "vtamiq_metric", "example.py")
    # unused import, import order, print, zip without strict=, a blind except that passes
    assert {"F401", "I001", "T201", "B905", "BLE001", "S110"} <= codes


def test_ruff_lets_the_command_lines_print_and_tests_go_without_docstrings():
    assert "T201" not in _ruff(LIBRARY_MODULE, "vtamiq_metric", "cli", "example.py")
    test_module = "def test_something():\n    assert 1 + 1 == 2\n"
    assert _ruff(test_module, "tests", "test_example.py") == set()
    assert "D103" in _ruff('"""A module."""\n\n\ndef public():\n    return 1\n', "vtamiq_metric", "example.py")
