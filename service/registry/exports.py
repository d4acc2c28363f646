"""Runtime exports (ONNX, OpenVINO IR) cached beside the backbone they were made from.

Layout: ``backbones/<id>/exports/<kind>-<tool version>-<weights sha256[:16]>/`` with the
exported files and ``export.json`` (each file's sha256 and the weights' full sha256). A
folder whose files no longer match its index is corrupt: it is deleted and rebuilt. A new
export is written under a temporary name and renamed into place, so a reader sees a
complete export or none. Exports are made at start-up or reload, never per request.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from service.registry.files import atomic_dir, sha256_of

log = logging.getLogger(__name__)

INDEX = "export.json"


class ExportCache:
    """Exports of one backbone's weights, identified by ``weights_sha256``."""

    def __init__(self, backbone_dir: Path | None, weights_sha256: str) -> None:
        self.weights_sha256 = weights_sha256
        root = None if backbone_dir is None else Path(backbone_dir) / "exports"
        self.root = root if root is not None and _writable(root) else _fallback_root()

    def folder(self, kind: str, version: str) -> Path:
        tag = re.sub(r"[^A-Za-z0-9._-]", "_", f"{kind}-{version}")
        return self.root / f"{tag}-{self.weights_sha256[:16]}"

    def get_or_build(self, kind: str, version: str, build: Callable[[Path], None]) -> Path:
        """The verified export folder for (``kind``, ``version``), built by ``build(folder)``
        when it is missing or corrupt."""
        target = self.folder(kind, version)
        problem = self.problem(target)
        if problem is None:
            return target
        if target.exists():
            log.warning("export cache %s is corrupt (%s): rebuilding it", target, problem)
            shutil.rmtree(target)

        def fill(staging: Path) -> None:
            build(staging)
            files = {p.name: sha256_of(p) for p in sorted(staging.iterdir()) if p.is_file()}
            index = {"kind": kind, "version": version, "weights_sha256": self.weights_sha256}
            (staging / INDEX).write_text(json.dumps({**index, "files": files}, indent=2) + "\n")

        try:
            atomic_dir(target, fill)
        except OSError:
            if self.problem(target) is not None:  # not a concurrent builder that won the race
                raise
        log.info("exported %s %s to %s", kind, version, target)
        return target

    def problem(self, folder: Path) -> str | None:
        """Why ``folder`` is not a usable export (None when it is)."""
        index_path = folder / INDEX
        if not index_path.is_file():
            return "missing" if not folder.exists() else f"no {INDEX}"
        try:
            index = json.loads(index_path.read_text())
            files: dict[str, str] = index["files"]
        except (ValueError, KeyError, TypeError) as exc:
            return f"unreadable {INDEX}: {exc}"
        if index.get("weights_sha256") != self.weights_sha256:
            return "made from other weights"
        for name, expected in files.items():
            path = folder / name
            if not path.is_file():
                return f"{name} is missing"
            if sha256_of(path) != expected:
                return f"{name} does not match its checksum"
        return None


def _writable(root: Path) -> bool:
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            return True
    except OSError:
        log.warning("cannot write exports under %s; using a temporary folder", root)
        return False


def _fallback_root() -> Path:
    root = Path(tempfile.gettempdir()) / "oclip-exports"
    root.mkdir(parents=True, exist_ok=True)
    return root
