"""Ready for the package index (issue 21 item 11): one version, a licence in every archive, a changelog section for
the version, a publishing workflow, and the contents of the sdist and the wheel.

The archive test (slow) checks the distributions that ``.ci/run`` built, passed in ``VTAMIQ_DIST_DIR``, or builds
them itself with ``python -m build`` from a copy of the checkout (what git would commit, so stray local files cannot
hide a missing one).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from vtamiq_metric import __version__

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
WEIGHTS = "vtamiq_metric/weights/vtamiq_tiny_patch16_kadis_photos_robust.safetensors"


def test_the_version_has_one_source():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "vtamiq_metric._version.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.post\d+)?(?:\.dev\d+)?", __version__), __version__
    from vtamiq_metric.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert out.getvalue().strip() == f"vtamiq-metric {__version__}"


def test_the_changelog_has_unreleased_on_top_and_a_section_for_this_version():
    headings = re.findall(r"^## (.+)$", (ROOT / "CHANGELOG.md").read_text(), flags=re.MULTILINE)
    assert headings[0] == "[Unreleased]"
    released = [h for h in headings[1:] if not h.startswith("[Unreleased]")]
    assert released, "no released section"
    match = re.fullmatch(r"\[(.+)\] - (\d{4}-\d{2}-\d{2})", released[0])
    assert match, f"expected '## [X.Y.Z] - YYYY-MM-DD', got {released[0]!r}"
    assert match.group(1) == __version__, "the newest released section must name vtamiq_metric/_version.py's version"


def test_the_licence_is_apache_2_everywhere_it_is_declared():
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n                           Version 2.0, January 2004")
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]


def test_the_publishing_workflow_uses_trusted_publishing_from_one_job():
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "publish.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert triggers == {"release": {"types": ["published"]}}
    assert workflow["permissions"] == {"contents": "read"}
    build, publish = workflow["jobs"]["build"], workflow["jobs"]["publish"]
    assert "permissions" not in build  # the build job cannot mint a token
    assert publish["needs"] == "build"
    assert publish["environment"]["name"] == "pypi"
    assert publish["permissions"] == {"id-token": "write"}
    uses = [step.get("uses", "") for step in publish["steps"]]
    assert "pypa/gh-action-pypi-publish@release/v1" in uses
    assert not any("password" in step.get("with", {}) for step in publish["steps"])  # no stored token
    build_script = "\n".join(step.get("run", "") for step in build["steps"])
    assert "python -m build" in build_script and "twine check --strict" in build_script


def _distributions(tmp_path: Path) -> tuple[Path, Path]:
    given = os.environ.get("VTAMIQ_DIST_DIR")
    if given:
        out = Path(given)
    else:
        pytest.importorskip("build")
        files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.splitlines()
        src = tmp_path / "src"
        for name in files:
            if (ROOT / name).is_file():
                (src / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, src / name)
        out = tmp_path / "dist"
        done = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(src)], capture_output=True,
                              text=True, timeout=280, check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sdists, wheels = sorted(out.glob("vtamiq_metric-*.tar.gz")), sorted(out.glob("vtamiq_metric-*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, (
        f"expected one sdist and one wheel in {out}, got {sorted(out.iterdir())}")
    return sdists[0], wheels[0]


@pytest.mark.slow  # builds the sdist and the wheel (or reads .ci/run's) and opens them
def test_the_sdist_and_the_wheel_hold_the_licence_the_version_and_the_package(tmp_path):
    sdist, wheel = _distributions(tmp_path)
    assert wheel.name == f"vtamiq_metric-{__version__}-py3-none-any.whl"
    assert sdist.name == f"vtamiq_metric-{__version__}.tar.gz"
    licence = (ROOT / "LICENSE").read_bytes()

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"vtamiq_metric-{__version__}.dist-info"
        metadata = Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        assert archive.read(f"{info}/licenses/LICENSE") == licence
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert metadata["Version"] == __version__
    assert metadata["License-Expression"] == "Apache-2.0" and metadata["License-File"] == "LICENSE"
    assert metadata["Name"] == "vtamiq-metric" and metadata["Description-Content-Type"] == "text/markdown"
    assert "vtamiq = vtamiq_metric.cli:main" in entry_points
    assert "vtamiq-train = vtamiq_metric.training.cli:main" in entry_points
    assert {WEIGHTS, "vtamiq_metric/weights/MODEL_CARD.md", "vtamiq_metric/py.typed"} <= names
    assert not any(name.startswith(("tests/", "docs/", "benchmarks/", "examples/")) for name in names)

    with tarfile.open(sdist) as archive:
        top = f"vtamiq_metric-{__version__}"
        members = {m.name[len(top) + 1:] for m in archive.getmembers() if m.isfile()}
        assert archive.extractfile(f"{top}/LICENSE").read() == licence
        pkg_info = Parser().parsestr(archive.extractfile(f"{top}/PKG-INFO").read().decode())
    assert pkg_info["Version"] == __version__ and pkg_info["License-Expression"] == "Apache-2.0"
    assert {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", WEIGHTS} <= members
    assert not any(name.startswith("tests/") for name in members)  # half a test suite would not run
    modules = {name for name in names if name.startswith("vtamiq_metric/") and name.endswith(".py")}
    assert modules == {name for name in members if name.startswith("vtamiq_metric/") and name.endswith(".py")}
    assert modules == {str(p.relative_to(ROOT)) for p in (ROOT / "vtamiq_metric").rglob("*.py")}
