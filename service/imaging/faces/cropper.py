"""Detector + crop parameters as one object: the preprocessing stage and the trainer share it,
so a task trained on face crops is served the same crops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from service.imaging.faces.align import crop_face
from service.imaging.faces.haar import HaarDetector
from service.imaging.faces.mtcnn import TURN_DEGREES, MTCNNDetector
from service.imaging.faces.mtcnn_nets import WeightsUnavailable
from service.imaging.faces.types import Detections, Face, FaceDetector
from service.imaging.faces.yunet import YuNetDetector
from service.registry.manifest import DetectorName, FaceCropSpec  # the manifest's record

log = logging.getLogger(__name__)
DetectorChoice = DetectorName | Literal["auto"]


def build_detector(
    name: DetectorChoice,
    yunet_model: Path | None = None,
    max_pixels: int = 2_000_000,
    turn_degrees: float = TURN_DEGREES,
) -> FaceDetector:
    """The named detector; ``auto`` is MTCNN when its weights are installed, else Haar.

    Nothing is downloaded: MTCNN's weights come in the facenet-pytorch wheel, YuNet's file
    from the operator, Haar's cascade in the OpenCV wheel. ``turn_degrees`` sets MTCNN's
    turned passes (0: upright only).
    """
    if name == "auto":
        try:
            return MTCNNDetector(max_pixels, turn_degrees)
        except WeightsUnavailable as error:
            log.warning("face detector: %s; serving the Haar cascade instead", error)
            return HaarDetector(max_pixels=max_pixels)
    if name == "mtcnn":
        return MTCNNDetector(max_pixels, turn_degrees)
    if name == "haar":
        return HaarDetector(max_pixels=max_pixels)
    if name == "yunet":
        if yunet_model is None:
            raise ValueError("the yunet face detector needs a model file path (face_yunet_model)")
        return YuNetDetector(yunet_model, max_pixels=max_pixels)
    raise ValueError(f"unknown face detector {name!r}; choose 'auto', 'mtcnn', 'haar' or 'yunet'")


def detect_faces(
    detector: FaceDetector, image: Image.Image, max_faces: int, min_size: int
) -> Detections:
    """The ``max_faces`` largest faces of the upright RGB ``image``, and how many there were."""
    found = detector.detect(image, min_size)
    return Detections(found[:max_faces], len(found))


@dataclass(frozen=True)
class FaceCropper:
    """Finds faces in an upright RGB image and cuts the square crops the encoder takes."""

    detector: FaceDetector
    margin: float = 0.5
    size: int = 224
    max_faces: int = 10
    min_size: int = 40

    @property
    def spec(self) -> FaceCropSpec:
        return FaceCropSpec(detector=self.detector.name, margin=self.margin, size=self.size)  # type: ignore[arg-type]

    def detect(self, image: Image.Image) -> Detections:
        return detect_faces(self.detector, image, self.max_faces, self.min_size)

    def crop(self, image: Image.Image, face: Face) -> Image.Image:
        return crop_face(image, face, self.margin, self.size)

    def crops(self, image: Image.Image) -> tuple[Detections, list[Image.Image]]:
        """Detect once, crop each kept face (largest first): one encoder row per crop."""
        detections = self.detect(image)
        return detections, [self.crop(image, face) for face in detections.faces]

    def largest(self, image: Image.Image) -> Image.Image | None:
        """The crop of the largest face, or None: what ``--crop faces`` trains on."""
        faces = self.detector.detect(image, self.min_size)
        return self.crop(image, faces[0]) if faces else None


@dataclass(frozen=True)
class FaceConfig:
    """The operator's face settings; ``service.settings.Settings`` holds them as ``face_*``,
    ``max_faces_per_image`` and ``min_face_px`` (the engine stays free of the HTTP settings).
    """

    detector: DetectorChoice = "auto"
    yunet_model: Path | None = None
    max_faces: int = 10
    min_size: int = 40
    margin: float = 0.5
    max_scan_pixels: int = 2_000_000
    turn_degrees: float = TURN_DEGREES


def build_cropper(config: FaceConfig, size: int, spec: FaceCropSpec | None = None) -> FaceCropper:
    """The cropper for one backbone input ``size``; a task trained on face crops brings its
    ``spec`` (detector, margin, size) from its manifest, and that wins over the settings.
    """
    choice = spec.detector if spec else config.detector
    detector = build_detector(
        choice, config.yunet_model, config.max_scan_pixels, config.turn_degrees
    )
    margin, size = (spec.margin, spec.size) if spec else (config.margin, size)
    return FaceCropper(detector, margin, size, config.max_faces, config.min_size)
