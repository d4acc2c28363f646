"""The docs' settings and error tables are exactly what the code declares."""

from __future__ import annotations

import importlib.util

from tests.server_process import ROOT


def test_doc_tables_match_the_code() -> None:
    spec = importlib.util.spec_from_file_location("doc_tables", ROOT / "scripts/doc_tables.py")
    assert spec is not None and spec.loader is not None
    generated = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generated)
    for path, (section, rows) in generated.tables().items():
        page = path.read_text()
        assert generated.rewrite(page, section, rows) == page, (
            f"{path.name}: the {section} table is stale: run .venv/bin/python scripts/doc_tables.py"
        )
