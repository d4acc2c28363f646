"""Reading API keys from the setting and from a key file."""

from __future__ import annotations

from pathlib import Path

from service.settings import Settings


def test_comments_blank_lines_and_indentation_are_not_keys(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(
        "# operators' keys\n"
        "alpha\n"
        "   # an indented comment, not a key\n"
        "\t#tabbed comment\n"
        "\n"
        "   \n"
        "  beta  \n"
    )
    settings = Settings(api_keys=" delta ,, ", api_keys_file=keys_file)
    assert settings.load_api_keys() == [
        "delta",
        "alpha",
        "beta",
    ]


def test_no_keys_configured_means_no_keys() -> None:
    assert Settings(api_keys="", api_keys_file=None).load_api_keys() == []
