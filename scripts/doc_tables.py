"""The README's settings and error tables, generated from the code; the tests check that
the README holds exactly these rows.

    .venv/bin/python scripts/readme_tables.py          # rewrite both tables in README.md
"""

from __future__ import annotations

from pathlib import Path

from service.config import Settings
from service.errors import ERROR_TABLE

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


def table_in(section: str, readme: str) -> tuple[int, int]:
    """Start and end offsets of the first table under ``## section``."""
    start = readme.index(f"\n## {section}")
    first = readme.index("\n|", start) + 1
    end = readme.find("\n\n", first)
    return first, len(readme) if end < 0 else end


def rewrite(readme: str) -> str:
    for section, rows in (("Limits and errors", error_rows()), ("Settings", settings_rows())):
        start, end = table_in(section, readme)
        readme = readme[:start] + "\n".join(rows) + readme[end:]
    return readme


if __name__ == "__main__":
    path = Path(__file__).resolve().parent.parent / "README.md"
    path.write_text(rewrite(path.read_text()))
