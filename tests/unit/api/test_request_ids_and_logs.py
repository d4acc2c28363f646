"""Request ids are the client's only when the whole value is sane; text logs stay one line
per record whatever a client puts in the path."""

from __future__ import annotations

import logging

import pytest

from service.logs import TextFormatter
from tests.unit.api.conftest import Call


@pytest.mark.parametrize(
    ("given", "kept"),
    [("abc-123.X:y_z", True), ("a" * 128, True), ("a" * 129, False), ("ok then", False)],
)
def test_request_id_is_kept_only_when_the_whole_value_is_sane(
    call: Call, given: str, kept: bool
) -> None:
    response = call("GET", "/healthz", headers={"x-request-id": given})
    echoed = response.headers["x-request-id"]
    assert (echoed == given) is kept
    assert len(echoed) <= 128 and " " not in echoed


def test_text_log_lines_cannot_be_forged() -> None:
    record = logging.makeLogRecord(
        {"msg": "GET %s 404", "args": ("/x\n2026-01-01 INFO service: admin logged in",)}
    )
    line = TextFormatter().format(record)
    assert "\n" not in line and "\\n" in line
