"""The shipped example configs parse into valid training configurations."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from service.trainer.fit_config import add_flags, load_config
from tests.server_process import ROOT

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_example_config_is_valid(path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser)
    config = load_config(parser.parse_args(["--config", str(path), "--epochs", "3"]))
    assert config.epochs == 3  # flags override the file
    assert config.task == path.stem
    values = config.values()
    assert len(values) == {"age": 101, "aesthetics": 5, "decade": 5}[path.stem]
    if config.labels:
        assert len(config.label_list() or []) == len(values)
