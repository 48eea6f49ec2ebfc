"""What the benchmark scripts share: printing their Markdown table and writing their JSON and Markdown files.

The scripts run as ``python benchmarks/<script>.py``, so this folder is on ``sys.path`` and they import it as
``_report``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def report(result: dict[str, Any], table: str, *, json_path: Path | None, markdown_path: Path | None) -> None:
    """Print ``table``; write ``result`` as JSON to ``json_path`` and ``table`` to ``markdown_path`` when given."""
    print(table, flush=True)
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {json_path}", flush=True)
    if markdown_path is not None:
        markdown_path.write_text(table)
        print(f"wrote {markdown_path}", flush=True)
