"""MTCNN, the default face detector, on scikit-image's astronaut portrait: its weights come
from the facenet-pytorch wheel and are refused unless their sha256 is the pinned one.

Hand-checked (tests/unit/imaging/test_faces.py, test_face_crops.py): face centre
(224, 112), eyes at about (201, 100) and (247, 103).
"""

from __future__ import annotations

import itertools
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.imaging.faces import (
    Box,
    Face,
    MTCNNDetector,
    Point,
    WeightsUnavailable,
    build_detector,
    crop_face,
    mtcnn,
)
from service.imaging.faces.mtcnn_nets import load_nets, weights_dir
from service.imaging.faces.nms import nms, squared
from service.imaging.faces.pyramid import Pyramid, level
from service.imaging.faces.turns import TurnedCopy, turned_size
from service.imaging.faces.types import order_faces, upright_box

data = pytest.importorskip("skimage.data")

FACE_CENTRE = Point(224, 112)
EYES = (Point(201, 100), Point(247, 103))


@pytest.fixture(scope="module")
def detector() -> MTCNNDetector:  # here, not conftest.py's Haar
    return MTCNNDetector()


def test_auto_serves_mtcnn_when_its_weights_are_installed() -> None:
    assert build_detector("auto").name == "mtcnn"


def test_portrait_gives_one_face_with_both_eyes(portrait: Image.Image, detector) -> None:
    (face,) = detector.detect(portrait, min_size=40)
    assert face.box.contains(FACE_CENTRE)
    assert 60 <= max(face.box.width, face.box.height) <= 140
    assert face.eyes is not None
    for found, checked in zip((face.eyes.left, face.eyes.right), EYES, strict=True):
        assert abs(found.x - checked.x) < 8 and abs(found.y - checked.y) < 8


@pytest.mark.parametrize("turn", [-20, 20])
def test_landmarks_follow_a_tilted_face(portrait: Image.Image, detector, turn: int) -> None:
    # PIL turns counter-clockwise on screen, so the eye line's angle becomes -turn.
    tilted = portrait.rotate(turn, Image.Resampling.BICUBIC, center=tuple(FACE_CENTRE))
    (face,) = detector.detect(tilted, min_size=40)
    assert face.eyes is not None
    level = face.eyes.angle_degrees + turn
    upright = detector.detect(portrait, min_size=40)[0].eyes
    assert upright is not None
    assert abs(level - upright.angle_degrees) < 6


@pytest.mark.parametrize(
    "photo", [lambda: data.chelsea(), lambda: data.coffee()], ids=["cat", "coffee"]
)
def test_photos_without_a_person_give_no_face(detector, photo) -> None:
    assert detector.detect(Image.fromarray(photo()), min_size=40) == []


def test_weights_whose_hash_differs_are_refused(tmp_path: Path) -> None:
    for name in ("pnet", "rnet", "onet"):
        shutil.copy(weights_dir() / f"{name}.pt", tmp_path / f"{name}.pt")
    load_nets(tmp_path)  # the genuine copies load
    with (tmp_path / "rnet.pt").open("ab") as file:
        file.write(b"\0")
    with pytest.raises(WeightsUnavailable, match="sha256"):
        load_nets(tmp_path)
    (tmp_path / "onet.pt").unlink()
    (tmp_path / "rnet.pt").unlink()
    with pytest.raises(WeightsUnavailable, match="missing"):
        load_nets(tmp_path)


def test_the_pyramid_starts_where_the_smallest_face_spans_the_window() -> None:
    pyramid = Pyramid(window=12, max_pixels=2_000_000)
    scales = pyramid.scales(1500, 900, min_size=30)
    assert scales[0] == pytest.approx(12 / 30)
    assert all(b == pytest.approx(a * 0.709) for a, b in itertools.pairwise(scales))
    assert 900 * scales[-1] >= 12 > 900 * scales[-1] * 0.709
    assert pyramid.smallest_findable(1500, 900, 30) == 30


def test_the_cap_shrinks_every_level_of_a_large_photo() -> None:
    pyramid = Pyramid(window=12, max_pixels=1_000_000)
    # 12 MP at 12 / 30 would be 1.9 MP: the cap scales it to 1 MP instead.
    first = pyramid.scales(4000, 3000, min_size=30)[0]
    assert 4000 * first * 3000 * first == pytest.approx(1_000_000, rel=1e-3)
    assert pyramid.smallest_findable(4000, 3000, 30) == 42
    scanned = pyramid.scanned_pixels(4000, 3000, 30)
    assert 1_000_000 < scanned < 1_000_000 / (1 - 0.709**2) + 50_000  # a geometric series


def test_nms_keeps_the_best_of_overlapping_boxes_and_nested_ones_only_on_request() -> None:
    boxes = np.array(
        [[0, 0, 10, 10, 0.9], [1, 1, 11, 11, 0.8], [20, 20, 30, 30, 0.7], [2, 2, 6, 6, 0.95]],
        np.float32,
    )
    assert nms(boxes, 0.5).tolist() == [3, 0, 2]  # the nested 4 px box overlaps little by union
    assert nms(boxes, 0.5, by_smaller=True).tolist() == [3, 2]
    assert squared(boxes[[0]][:, :4] * [1, 1, 1, 0.5]).tolist() == [[0, -2.5, 10, 7.5]]


def test_crops_of_a_tilted_face_come_out_level(portrait: Image.Image, detector) -> None:
    # The default detector's eyes drive crop_face's turn: in the crop of the portrait tilted
    # by 20 degrees, the detector finds the eye line level again; cut without the eyes, not.
    tilted = portrait.rotate(20, Image.Resampling.BICUBIC, center=tuple(FACE_CENTRE))
    (turned,) = detector.detect(tilted, min_size=40)

    def eye_angle(face: Face) -> float:
        (again,) = detector.detect(crop_face(tilted, face, 0.5, 160), min_size=40)
        assert again.eyes is not None
        return again.eyes.angle_degrees

    assert abs(eye_angle(turned)) < 5
    assert eye_angle(Face(turned.box, turned.score)) < -15


@pytest.mark.parametrize("turn", [-60, 60])
def test_a_head_tilted_past_the_cascade_is_found_on_a_turned_copy(
    portrait: Image.Image, detector, turn: int
) -> None:
    tilted = portrait.rotate(turn, Image.Resampling.BICUBIC, center=tuple(FACE_CENTRE))
    assert MTCNNDetector(turn_degrees=0).detect(tilted, min_size=40) == []  # upright only
    (face,) = detector.detect(tilted, min_size=40)
    assert face.box.contains(FACE_CENTRE)
    assert 60 <= max(face.box.width, face.box.height) <= 140  # the upright face's size
    assert face.eyes is not None  # mapped back from the turned copy into the photo's frame
    assert abs(face.eyes.angle_degrees + turn) < 10
    assert math.dist(face.eyes.left, face.eyes.right) > 30  # about 46 px on the upright face


@pytest.mark.parametrize(("degrees", "scale"), [(25, 1.0), (-25, 0.5), (40, 0.3)])
def test_a_turned_copy_maps_its_points_back(degrees: float, scale: float) -> None:
    photo = Image.new("RGB", (300, 200))
    photo.putpixel((250, 40), (255, 255, 255))
    copy = TurnedCopy.of(photo, degrees, scale)
    expected = turned_size(round(300 * scale), round(200 * scale), degrees)
    assert all(abs(a - b) <= 2 for a, b in zip(copy.image.size, expected, strict=True))
    brightness = np.asarray(copy.image).sum(axis=2)
    y, x = np.unravel_index(brightness.argmax(), brightness.shape)
    back_x, back_y = copy.to_source(np.array([x + 0.5]), np.array([y + 0.5]))
    assert abs(back_x[0] - 250.5) < 1.5 / scale and abs(back_y[0] - 40.5) < 1.5 / scale


def test_turned_passes_share_the_scan_cap() -> None:
    upright = MTCNNDetector(max_pixels=1_500_000, turn_degrees=0)
    turned = MTCNNDetector(max_pixels=1_500_000, turn_degrees=25)
    # On 12 MP every pass is capped: the upright half and the turned quarters add up to the cap.
    twelve_mp = turned.scanned_pixels(4000, 3000, 40)
    assert 1_500_000 < twelve_mp < 1_500_000 / (1 - 0.709**2) + 150_000
    assert upright.scanned_pixels(4000, 3000, 40) == pytest.approx(twelve_mp, rel=0.05)
    # A small photo is not capped: the turned copies, larger canvases, add to its scan.
    assert turned.scanned_pixels(640, 480, 40) > 2 * upright.scanned_pixels(640, 480, 40)


@pytest.mark.parametrize("turn_degrees", [0, 25])
def test_detection_scans_the_pixels_it_is_priced_at(monkeypatch, turn_degrees: float) -> None:
    scanned: list[int] = []

    def recorded(image: Image.Image, scale: float) -> Image.Image:
        copy = level(image, scale)
        scanned.append(copy.width * copy.height)
        return copy

    monkeypatch.setattr(mtcnn, "level", recorded)  # every P-Net level of every pass
    detector = MTCNNDetector(max_pixels=1_500_000, turn_degrees=turn_degrees)
    detector.detect(Image.new("RGB", (4000, 3000), (90, 90, 90)), min_size=40)
    assert len(scanned) > 10
    assert sum(scanned) == pytest.approx(detector.scanned_pixels(4000, 3000, 40), rel=0.01)
    assert max(scanned) <= 1_500_000 / (2 if turn_degrees else 1) * 1.01


def test_a_box_outside_the_photo_is_no_face() -> None:
    # A turned copy's black corners map back beyond the photo's edges.
    outside = Face(upright_box(-80, 10, 60, 60, 1.0, (100, 100)), 0.99)
    assert outside.box.width == 0
    inside = Face(upright_box(-20, 10, 60, 60, 1.0, (100, 100)), 0.9)
    assert inside.box == Box(0, 10, 40, 60)
    assert order_faces([outside, inside], 32) == [inside]
