"""Face crops (square, margin, padding, levelled by the eye line), the cropper, and the
face settings, on scikit-image's astronaut portrait with the Haar box of tests/unit/imaging/
conftest.py (about (177, 66, 95, 95), checked by hand).
"""

from __future__ import annotations

from dataclasses import astuple

import numpy as np
import pytest
from PIL import Image

from service.imaging.faces import (
    Box,
    Eyes,
    Face,
    FaceConfig,
    FaceCropper,
    FaceCropSpec,
    HaarDetector,
    Point,
    YuNetDetector,
    build_cropper,
    build_detector,
    crop_face,
)
from service.imaging.faces.yunet import face_from_row
from service.settings import Settings
from tests import images

EYES = Eyes(Point(201, 100), Point(247, 103))


def test_crop_is_the_square_around_the_box(portrait: Image.Image, portrait_face: Face) -> None:
    box = portrait_face.box
    crop = crop_face(portrait, portrait_face, margin=0.0, size=box.width)
    assert crop.size == (box.width, box.width)
    assert crop.mode == "RGB"
    expected = np.asarray(portrait.crop((box.x, box.y, box.x + box.width, box.y + box.height)))
    assert np.abs(np.asarray(crop, dtype=float) - expected).mean() < 2


def test_crop_margin_and_size(portrait: Image.Image, portrait_face: Face) -> None:
    crop = crop_face(portrait, portrait_face, margin=0.5, size=224)
    assert crop.size == (224, 224)
    # The middle half of a 1.5x crop is the box itself, brought to 149 px.
    box = portrait_face.box
    inner = crop.crop((37, 37, 187, 187)).resize((box.width, box.height))
    expected = np.asarray(portrait.crop((box.x, box.y, box.x + box.width, box.y + box.height)))
    assert np.abs(np.asarray(inner, dtype=float) - expected).mean() < 12


def test_crop_pads_black_beyond_the_border(portrait: Image.Image) -> None:
    corner = Face(Box(0, 0, 80, 80), score=1.0)
    crop = np.asarray(crop_face(portrait, corner, margin=0.5, size=120))
    assert crop.shape == (120, 120, 3)
    assert crop[:15, :15].max() == 0  # above and left of the photo
    assert crop[60:, 60:].mean() > 30  # the photo itself


def test_crop_is_levelled_by_the_eye_line(portrait: Image.Image, portrait_face: Face) -> None:
    # Tilt the photo 20 degrees about the face centre, and the eyes with it.
    centre = portrait_face.box.centre
    tilted = portrait.rotate(20, Image.Resampling.BICUBIC, center=(centre.x, centre.y))
    turn = np.radians(-20)  # PIL turns counter-clockwise on screen: y points down

    def moved(p: Point) -> Point:
        dx, dy = p.x - centre.x, p.y - centre.y
        return Point(
            centre.x + dx * np.cos(turn) - dy * np.sin(turn),
            centre.y + dx * np.sin(turn) + dy * np.cos(turn),
        )

    upright = crop_face(portrait, Face(portrait_face.box, 1.0, EYES), 0.3, 160)
    levelled = crop_face(
        tilted, Face(portrait_face.box, 1.0, Eyes(moved(EYES.left), moved(EYES.right))), 0.3, 160
    )
    unlevelled = crop_face(tilted, Face(portrait_face.box, 1.0), 0.3, 160)

    def error(crop: Image.Image) -> float:
        middle = (30, 30, 130, 130)  # away from the corners the tilt brought in
        a = np.asarray(crop.crop(middle), dtype=float)
        return float(np.abs(a - np.asarray(upright.crop(middle), dtype=float)).mean())

    assert error(levelled) < 6
    assert error(unlevelled) > 3 * error(levelled)


def test_cropper_gives_one_crop_per_kept_face(group: tuple) -> None:
    canvas, _ = group
    cropper = FaceCropper(HaarDetector(), margin=0.5, size=96, max_faces=3, min_size=32)
    detections, crops = cropper.crops(canvas)
    assert (len(detections.faces), detections.found) == (3, 4)
    assert [crop.size for crop in crops] == [(96, 96)] * 3
    assert cropper.spec.model_dump() == {"detector": "haar", "margin": 0.5, "size": 96}


def test_largest_face_crop_or_none(portrait: Image.Image, portrait_face: Face) -> None:
    cropper = FaceCropper(HaarDetector(), size=64)
    largest = cropper.largest(portrait)
    assert largest is not None
    assert largest.tobytes() == crop_face(portrait, portrait_face, 0.5, 64).tobytes()
    assert cropper.largest(images.gradient(320, 240)) is None


def test_yunet_needs_the_operators_model_file(tmp_path) -> None:
    with pytest.raises(ValueError, match="model file"):
        build_detector("yunet")
    with pytest.raises(FileNotFoundError, match="fetches nothing"):
        YuNetDetector(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="'auto', 'mtcnn', 'haar' or 'yunet'"):
        build_detector("dlib")  # type: ignore[arg-type]


def test_yunet_rows_map_back_to_the_upright_image() -> None:
    # A row on a half-size copy: box, right eye, left eye, nose, mouth corners, score.
    row = np.array([10, 20, 30, 40, 30, 32, 20, 30, 25, 40, 22, 50, 28, 50, 0.93], np.float32)
    face = face_from_row(row, scale=0.5, size=(100, 200))
    assert face.box == Box(20, 40, 60, 80)
    assert face.eyes == Eyes(Point(40, 60), Point(60, 64))  # ordered by x in the image
    assert face.score == pytest.approx(0.93)


def test_settings_defaults_are_the_face_config_defaults() -> None:
    settings, config = Settings(), FaceConfig()
    assert (
        settings.face_detector,
        settings.face_yunet_model,
        settings.max_faces_per_image,
        settings.min_face_px,
        settings.face_margin,
        settings.face_max_scan_pixels,
        settings.face_turn_degrees,
    ) == astuple(config)


def test_a_task_crop_spec_wins_over_the_settings() -> None:
    spec = FaceCropSpec(detector="haar", margin=0.2, size=112)
    cropper = build_cropper(FaceConfig(margin=0.5, max_faces=3), size=224, spec=spec)
    assert (cropper.margin, cropper.size, cropper.max_faces) == (0.2, 112, 3)
    served = build_cropper(FaceConfig(), size=224).spec
    assert served == FaceCropSpec(detector="mtcnn", size=224)  # auto: MTCNN is installed


def test_box_geometry() -> None:
    box = Box(10, 10, 20, 20)
    assert box.iou(box) == 1.0
    assert box.iou(Box(100, 100, 5, 5)) == 0.0
    assert box.iou(Box(20, 10, 20, 20)) == pytest.approx(1 / 3)
