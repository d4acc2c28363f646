"""The README's settings and error tables are exactly what the code declares."""

from __future__ import annotations

import importlib.util

from tests.server_process import ROOT


def test_readme_tables_match_the_code() -> None:
    spec = importlib.util.spec_from_file_location(
        "readme_tables", ROOT / "scripts/readme_tables.py"
    )
    assert spec is not None and spec.loader is not None
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    readme = (ROOT / "README.md").read_text()
    assert tables.rewrite(readme) == readme, (
        "README tables are stale: run .venv/bin/python scripts/readme_tables.py"
    )
