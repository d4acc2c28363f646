"""The package's layers, read from the import statements of every module: who may import whom.

- ``service.imaging`` (bytes -> tensors, faces) imports nothing of the engine, API, batch or
  trainer: both the server and the trainer build on it.
- The engine imports nothing of the API, batch scoring or the trainer; inside it, a stage
  imports only earlier stages (pre -> core -> post), never a later one.
- The trainer imports the engine only through its public API (``service.engine``), never a
  module inside it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.server_process import ROOT

SERVICE = ROOT / "service"
# Stage order inside the engine: a module may import its own stage and earlier ones.
STAGES = ("service.engine.pre", "service.engine.core", "service.engine.post")
# The one exception, and why: the start-up parity gate admits a runtime by whether the
# served answer (post's rank distribution) would change, so it computes that answer.
LATER_STAGE_ALLOWED = {"service.engine.core.runtimes.parity": "service.engine.post"}


def imports_of(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in ``path`` names, type-checking
    imports included: a layer does not even name a later layer's types."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("service")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("path", modules("service.imaging"), ids=module_name)
def test_imaging_imports_no_consumer(path: Path) -> None:
    consumers = ("service.engine", "service.api", "service.batch", "service.trainer")
    wrong = sorted(n for n in imports_of(path) if any(under(n, c) for c in consumers))
    assert not wrong, f"{module_name(path)} imports {wrong}"


@pytest.mark.parametrize("path", modules("service.engine"), ids=module_name)
def test_the_engine_imports_no_caller_and_no_later_stage(path: Path) -> None:
    names = imports_of(path)
    callers = ("service.api", "service.batch", "service.trainer")
    assert not [n for n in names if any(under(n, c) for c in callers)], module_name(path)
    own = next((i for i, stage in enumerate(STAGES) if under(module_name(path), stage)), None)
    if own is None:
        return  # the engine's top (engine, factory, lifecycle): wires the stages together
    allowed = LATER_STAGE_ALLOWED.get(module_name(path), "-")
    later = [
        n
        for n in names
        if any(under(n, stage) for stage in STAGES[own + 1 :]) and not under(n, allowed)
    ]
    assert not later, f"{module_name(path)} imports a later stage: {later}"


@pytest.mark.parametrize("path", modules("service.trainer"), ids=module_name)
def test_the_trainer_uses_only_the_engines_public_api(path: Path) -> None:
    inside = sorted(
        n
        for n in imports_of(path)
        if n.startswith("service.engine.") and n.split(".")[2] not in public_names()
    )
    assert not inside, f"{module_name(path)} imports engine internals: {inside}"


def public_names() -> set[str]:
    """What ``service.engine`` exports (``from service.engine import X`` reads as
    ``service.engine.X`` above)."""
    import service.engine

    return set(service.engine.__all__)


def test_the_checks_see_imports() -> None:
    """The reader finds what a module imports (else every test above would pass vacuously)."""
    assert "service.imaging.decode" in imports_of(SERVICE / "imaging" / "__init__.py")
    assert "service.engine.rank_logits" in imports_of(SERVICE / "trainer" / "loop.py")
    assert "service.engine.core.batcher" in imports_of(SERVICE / "engine" / "engine.py")
