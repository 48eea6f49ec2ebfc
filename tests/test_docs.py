"""The documentation site's gate (issue 21 item 12): `mkdocs build --strict` fails on a broken API reference or link.

`.ci/run` builds the real site with `mkdocs build --strict`. These tests build tiny sites with the repository's own
`mkdocs.yml` settings (theme, plugins, docstring options, link validation) and check that the gate closes on the
mistakes it exists for, and that every page of the real site is in its navigation.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
yaml = pytest.importorskip("yaml")


def _config() -> dict:
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def _nav_pages(nav) -> list[str]:
    pages: list[str] = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return pages


def test_every_page_is_in_the_navigation_and_strict_mode_is_on():
    config = _config()
    assert config["strict"] is True
    pages = set(_nav_pages(config["nav"]))
    on_disk = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert pages == on_disk


def _build(tmp_path: Path, pages: dict[str, str]) -> subprocess.CompletedProcess:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    config = _config()
    config["docs_dir"] = str(tmp_path / "docs")
    config["site_dir"] = str(tmp_path / "site")
    config["nav"] = [{name: name} for name in pages]
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            plugin["mkdocstrings"]["handlers"]["python"]["paths"] = [str(ROOT)]
    for name, text in pages.items():
        (tmp_path / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "docs" / name).write_text(text)
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(tmp_path / "mkdocs.yml")],
                          capture_output=True, text=True, timeout=240, check=False, cwd=tmp_path)


@pytest.mark.slow  # three small mkdocs builds
def test_strict_build_passes_a_good_site_and_fails_a_broken_reference_or_link(tmp_path):
    good = {"index.md": "# API\n\n::: vtamiq_metric.sampling.SamplingConfig\n\nSee [the other page](other.md).\n",
            "other.md": "# Other\n"}
    done = _build(tmp_path / "good", good)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SamplingConfig" in (tmp_path / "good" / "site" / "index.html").read_text()

    broken_reference = dict(good, **{"index.md": "# API\n\n::: vtamiq_metric.sampling.NoSuchName\n"})
    done = _build(tmp_path / "reference", broken_reference)
    assert done.returncode != 0 and "NoSuchName" in done.stderr

    broken_link = dict(good, **{"index.md": "# API\n\nSee [a page that is not there](missing.md).\n"})
    done = _build(tmp_path / "link", broken_link)
    assert done.returncode != 0 and "missing.md" in done.stderr
