"""Face detection and cropping for per-face predictions (``?faces=true``) and ``--crop faces``.

The engine's preprocessing stage calls :class:`FaceCropper` once per decoded upright image:
``detections, crops = cropper.crops(image)``; each crop then goes through the backbone's
eval transform and the crops of one image are encoded together.
"""

from service.imaging.faces.align import crop_face
from service.imaging.faces.cropper import (
    DetectorName,
    FaceConfig,
    FaceCropper,
    FaceCropSpec,
    build_cropper,
    build_detector,
    detect_faces,
)
from service.imaging.faces.haar import HaarDetector
from service.imaging.faces.mtcnn import MTCNNDetector
from service.imaging.faces.mtcnn_nets import WeightsUnavailable
from service.imaging.faces.types import Box, Detections, Eyes, Face, FaceDetector, Point
from service.imaging.faces.yunet import YuNetDetector

__all__ = [
    "Box",
    "Detections",
    "DetectorName",
    "Eyes",
    "Face",
    "FaceConfig",
    "FaceCropSpec",
    "FaceCropper",
    "FaceDetector",
    "HaarDetector",
    "MTCNNDetector",
    "Point",
    "WeightsUnavailable",
    "YuNetDetector",
    "build_cropper",
    "build_detector",
    "crop_face",
    "detect_faces",
]
