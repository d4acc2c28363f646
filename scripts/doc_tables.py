"""The docs' settings and error tables, generated from the code; the tests check that
the pages hold exactly these rows.

    .venv/bin/python scripts/doc_tables.py   # rewrite both tables (docs/api.md, docs/operating.md)
"""

from __future__ import annotations

from pathlib import Path

from service.errors import ERROR_TABLE
from service.settings import Settings

HEADERS = {
    "unauthorized": " (+ `WWW-Authenticate`)",
    "overloaded": " (+ `Retry-After`)",
    "not_ready": " (+ `Retry-After`)",
    "shutting_down": " (+ `Retry-After`, `Connection: close`)",
}


def default_text(value: object) -> str:
    return "empty" if value in ("", None) else f"`{value}`"


def settings_rows() -> list[str]:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `OCLIP_{name.upper()}` | {default_text(field.default)} | {description} |")
    return rows


def error_rows() -> list[str]:
    rows = ["| code | status | meaning |", "|---|---|---|"]
    for kind in ERROR_TABLE:
        status = f"{kind.status}{HEADERS.get(kind.code, '')}"
        rows.append(f"| `{kind.code}` | {status} | {kind.meaning} |")
    return rows


DOCS = Path(__file__).resolve().parent.parent / "docs"


def tables() -> dict[Path, tuple[str, list[str]]]:
    """Each generated table: the page, the section it opens, its rows."""
    return {
        DOCS / "api.md": ("Limits and errors", error_rows()),
        DOCS / "operating.md": ("Settings", settings_rows()),
    }


def table_in(section: str, page: str) -> tuple[int, int]:
    """Start and end offsets of the first table under ``## section``."""
    start = page.index(f"\n## {section}")
    first = page.index("\n|", start) + 1
    end = page.find("\n\n", first)
    return first, len(page) if end < 0 else end


def rewrite(page: str, section: str, rows: list[str]) -> str:
    start, end = table_in(section, page)
    return page[:start] + "\n".join(rows) + page[end:]


if __name__ == "__main__":
    for path, (section, rows) in tables().items():
        path.write_text(rewrite(path.read_text(), section, rows))
