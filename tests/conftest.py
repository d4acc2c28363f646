"""Shared fixtures: a tiny random-weight registry and a real server in a subprocess."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.registry import ModelStore
from service.trainer.architectures import TINY, BuiltClip, build_clip
from service.trainer.tasks import BUILTIN_TASKS
from service.trainer.zeroshot import publish_zeroshot
from tests.server_process import ROOT, RunningServer, serving

__all__ = ["ROOT", "RunningServer"]

# The served default is OCLIP_RUNTIME=auto (the fastest runtime that passes parity, measured
# here). Tests that count the eager tower's forwards or compare exact figures need to know
# which runtime serves, so the suite pins torch; the tests of the default itself unset it
# (tests/unit/engine/core/test_layout_selection.py).
os.environ.setdefault("OCLIP_RUNTIME", "torch")


@pytest.fixture(scope="session")
def tiny_clip() -> BuiltClip:
    return build_clip(TINY, seed=0)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory, tiny_clip: BuiltClip) -> Path:
    """A registry with age, aesthetics and decade on one tiny random backbone."""
    root = tmp_path_factory.mktemp("store")
    publish_zeroshot(ModelStore(root), tiny_clip, list(BUILTIN_TASKS.values()), "tests")
    return root


@pytest.fixture(scope="module")
def server(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {"OCLIP_MAX_IMAGES_PER_REQUEST": "4", "OCLIP_MAX_UPLOAD_BYTES": "8000000"}
    with serving(tiny_store, log, env) as running:
        yield running
