"""Model registry: artifact formats on disk and loading of the active task versions."""

from service.registry.manifest import BackboneManifest, TaskManifest
from service.registry.store import LoadedBackbone, LoadedTask, ModelStore, RegistrySnapshot

__all__ = [
    "BackboneManifest",
    "LoadedBackbone",
    "LoadedTask",
    "ModelStore",
    "RegistrySnapshot",
    "TaskManifest",
]
