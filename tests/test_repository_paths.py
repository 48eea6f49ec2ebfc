"""Every repository path the project cites in its code, comments, docstrings and documentation exists.

Citations are scanned in the package, the tests, the benchmarks, the examples, the docs site, the README and
ARCHITECTURE.md (CHANGELOG.md is history and may name files that have since moved). A citation is a token that starts
with a top-level folder of the repository (``docs/background/distortions.md``, ``tests/assets/reference/keys-*.tsv``,
``benchmarks/bench_import.py``...; a glob must match at least one file) or a bare upper-case Markdown file name
(``MODEL_CARD.md``), which must name a file somewhere in the repository (lower-case names such as ``table.md`` are
output files of scripts, not citations). Before issue 22, 35 citations pointed into a
``spec/`` folder that was never part of the repository; this test keeps it that way.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP = ("docs", "examples", "benchmarks", "tests", "vtamiq_metric", "spec", ".ci", ".github")
# A path token: starts at a word boundary that is not inside a longer path or URL, at one of the top-level folders.
_TOP_ALTERNATIVES = "|".join(re.escape(t) for t in TOP)
_PATH = re.compile(rf"(?<![\w./-])(?:{_TOP_ALTERNATIVES})/[\w./*-]*[\w*]")
_MARKDOWN_NAME = re.compile(r"(?<![\w./-])[A-Z][A-Z0-9_-]*\.md\b")  # README.md, MODEL_CARD.md...
_SKIP_CHARS = set("{}<>$")


def _tracked_files() -> list[str]:
    done = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines() if (ROOT / line).is_file()]


def _scanned(files: list[str]) -> list[str]:
    def wanted(name: str) -> bool:
        if name in ("README.md", "ARCHITECTURE.md", "mkdocs.yml", ".ci/run"):
            return True
        if name.startswith("docs/") and name.endswith(".md"):
            return True
        return name.split("/")[0] in ("vtamiq_metric", "tests", "benchmarks", "examples") and \
            name.endswith((".py", ".md", ".sh", ".toml"))
    return [name for name in files if wanted(name) and name != "tests/test_repository_paths.py"]


def citations(text: str) -> tuple[set[str], set[str]]:
    """The path tokens and the bare Markdown file names cited in ``text``."""
    paths = {m.group(0).rstrip(".") for m in _PATH.finditer(text)}
    names = {m.group(0) for m in _MARKDOWN_NAME.finditer(text)}
    return {p for p in paths if not _SKIP_CHARS & set(p)}, names


def missing_citations(root: Path, files: list[str]) -> list[str]:
    """``file: cited path`` for every citation in ``files`` (relative to ``root``) that names nothing there."""
    basenames = {Path(name).name for name in files}
    missing = []
    for name in _scanned(files):
        paths, markdown_names = citations((root / name).read_text(encoding="utf-8", errors="replace"))
        for path in sorted(paths):
            target = path.rstrip("/")
            found = any(root.glob(target)) if "*" in target else (root / target).exists()
            if not found:
                missing.append(f"{name}: {path}")
        for md in sorted(markdown_names):
            if md not in basenames:
                missing.append(f"{name}: {md}")
    return missing


def test_every_cited_repository_path_exists():
    missing = missing_citations(ROOT, _tracked_files())
    assert missing == [], "cited paths that are not in the repository:\n" + "\n".join(missing)


def test_the_scan_finds_citations_and_missing_ones(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# page\n")
    (tmp_path / "vtamiq_metric").mkdir()
    source = ('"""See ``docs/page.md`` §2, docs/gone.md, spec/REFERENCE.md and REFERENCE.md §7; not\n'
              'https://example.org/docs/x.md nor f"examples/{name}.png". Globs: docs/*.md, tests/*.tsv."""\n')
    (tmp_path / "vtamiq_metric" / "mod.py").write_text(source)
    files = ["docs/page.md", "vtamiq_metric/mod.py"]
    assert missing_citations(tmp_path, files) == [
        "vtamiq_metric/mod.py: docs/gone.md", "vtamiq_metric/mod.py: spec/REFERENCE.md",
        "vtamiq_metric/mod.py: tests/*.tsv", "vtamiq_metric/mod.py: REFERENCE.md"]


@pytest.mark.parametrize("text, paths", [
    ("(``docs/background/datasets.md`` §3.4),", {"docs/background/datasets.md"}),
    ("in tests/assets/reference/keys-*.tsv.", {"tests/assets/reference/keys-*.tsv"}),
    ("`benchmarks/bench_import.py`:", {"benchmarks/bench_import.py"}),
    ("see vtamiq_metric/weights/MODEL_CARD.md)", {"vtamiq_metric/weights/MODEL_CARD.md"}),
])
def test_citation_tokens(text, paths):
    assert citations(text)[0] == paths
