"""What the runtime tests read from a registry: its one backbone and its tasks."""

from __future__ import annotations

from service.registry import LoadedBackbone, LoadedTask, ModelStore


def loaded(store: ModelStore) -> tuple[LoadedBackbone, list[LoadedTask]]:
    snapshot = store.load_active()
    (backbone,) = snapshot.backbones.values()
    return backbone, list(snapshot.tasks.values())
