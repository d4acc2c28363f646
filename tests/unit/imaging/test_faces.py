"""Face detection and cropping on real photographs (scikit-image's bundled astronaut portrait).

Hand-checked once: the Haar box of ``astronaut()`` is about (177, 66, 95, 95); its crop, saved
as PNG and looked at, shows the whole face centred, hair to chin. Her eyes are at about
(201, 100) and (247, 103) (OpenCV's eye cascade, confirmed on the crop).
"""

from __future__ import annotations

import threading
from dataclasses import astuple

import numpy as np
import pytest
from PIL import Image, ImageOps

from service.imaging import ImageLimits, Preprocessor
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
    detect_faces,
)
from service.imaging.faces.yunet import face_from_row
from service.registry.manifest import Preprocess
from service.settings import Settings
from tests import images

data = pytest.importorskip("skimage.data")

FACE_CENTRE = Point(224, 112)  # between the eyes and the nose tip, checked by hand
EYES = Eyes(Point(201, 100), Point(247, 103))
SCALES = (1.0, 0.6, 0.4)  # pasted upright; then one mirrored copy at 0.8


@pytest.fixture(scope="module")
def portrait() -> Image.Image:
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def detector() -> HaarDetector:
    return HaarDetector()


@pytest.fixture(scope="module")
def portrait_face(portrait: Image.Image, detector: HaarDetector) -> Face:
    faces = detector.detect(portrait, min_size=40)
    assert len(faces) == 1
    return faces[0]


@pytest.fixture(scope="module")
def group() -> tuple[Image.Image, list[tuple[int, int, int]]]:
    """The portrait (upscaled to 768 px) pasted at 1, 0.6, 0.4 and mirrored at 0.8.

    Returns the canvas and each copy's (x, y, side), largest first.
    """
    base = Image.fromarray(data.astronaut()).resize((768, 768), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (1382, 1229), (120, 120, 120))
    places = [(0, 0, 768), (768, 0, 614), (0, 768, 461), (481, 768, 307)]
    for (x, y, side), mirrored in zip(places, (False, True, False, False), strict=True):
        copy = base.resize((side, side), Image.Resampling.LANCZOS)
        canvas.paste(ImageOps.mirror(copy) if mirrored else copy, (x, y))
    return canvas, places


def decoded(data_bytes: bytes) -> Image.Image:
    """Decode exactly as the server does: header checks, EXIF transpose, any mode to RGB."""
    settings = Preprocess(image_size=224, mean=(0.5,) * 3, std=(0.5,) * 3)
    return Preprocessor(settings, ImageLimits(max_pixels=10**8)).decode(data_bytes)


def test_one_portrait_gives_exactly_one_face_around_its_centre(portrait_face: Face) -> None:
    assert portrait_face.box.contains(FACE_CENTRE)
    assert 60 <= portrait_face.box.width <= 140
    assert 0 < portrait_face.score <= 1
    assert portrait_face.eyes is None  # Haar gives no landmarks


def test_group_photo_gives_every_face_largest_first(group: tuple) -> None:
    canvas, places = group
    faces = HaarDetector().detect(canvas, min_size=32)
    assert len(faces) == 4
    areas = [face.box.area for face in faces]
    assert areas == sorted(areas, reverse=True)
    for face, (x, y, side) in zip(faces, places, strict=True):
        # Each face lies inside its own pasted copy, around that copy's face centre.
        copy = Box(x, y, side, side)
        assert copy.contains(face.box.centre)
        mirrored = x == 768
        centre_x = (512 - FACE_CENTRE.x) if mirrored else FACE_CENTRE.x
        assert face.box.contains(Point(x + centre_x * side / 512, y + FACE_CENTRE.y * side / 512))


def test_more_faces_than_the_limit_keeps_the_largest_and_counts_all(group: tuple) -> None:
    canvas, _ = group
    detector = HaarDetector()
    every = detector.detect(canvas, min_size=32)
    kept, found = detect_faces(detector, canvas, max_faces=2, min_size=32)
    assert found == len(every) == 4
    assert kept == every[:2]
    assert min(f.box.area for f in kept) >= max(f.box.area for f in every[2:])
    assert detect_faces(detector, canvas, max_faces=2, min_size=32).dropped == 2


@pytest.mark.parametrize(
    ("orientation", "stored_as"),
    [
        (3, Image.Transpose.ROTATE_180),
        (6, Image.Transpose.ROTATE_90),
        (8, Image.Transpose.ROTATE_270),
    ],
)
def test_exif_rotated_photo_gives_the_same_face_in_the_upright_frame(
    portrait: Image.Image, detector: HaarDetector, orientation: int, stored_as: Image.Transpose
) -> None:
    upright = decoded(images.encode(portrait, "JPEG", quality=95))
    exif = Image.Exif()
    exif[0x0112] = orientation
    sideways = images.encode(portrait.transpose(stored_as), "JPEG", quality=95, exif=exif.tobytes())
    image = decoded(sideways)
    assert image.size == portrait.size
    (expected,) = detector.detect(upright, min_size=40)
    (face,) = detector.detect(image, min_size=40)
    assert face.box.iou(expected.box) > 0.85
    assert face.box.contains(FACE_CENTRE)


def _cmyk_jpeg(image: Image.Image) -> bytes:
    return images.encode(image.convert("CMYK"), "JPEG", quality=95)


@pytest.mark.parametrize(
    "encode",
    [
        lambda im: images.encode(im.convert("L"), "PNG"),
        lambda im: images.encode(im.convert("RGBA"), "PNG"),
        _cmyk_jpeg,
    ],
    ids=["grayscale", "rgba", "cmyk"],
)
def test_other_colour_modes_give_the_same_face(
    portrait: Image.Image, portrait_face: Face, detector: HaarDetector, encode
) -> None:
    image = decoded(encode(portrait))
    (face,) = detector.detect(image, min_size=40)
    assert face.box.iou(portrait_face.box) > 0.85


@pytest.mark.parametrize(
    "photo",
    [
        lambda: Image.fromarray(data.chelsea()),  # a cat
        lambda: Image.fromarray(data.coffee()),
        lambda: images.gradient(640, 480),
    ],
    ids=["cat", "coffee", "gradient"],
)
def test_photos_without_a_person_give_no_face(detector: HaarDetector, photo) -> None:
    assert detect_faces(detector, photo(), max_faces=10, min_size=40) == ([], 0)


def test_faces_below_the_minimum_size_are_neither_kept_nor_counted(
    portrait: Image.Image, portrait_face: Face, detector: HaarDetector
) -> None:
    too_large_minimum = portrait_face.box.width + 20
    assert detect_faces(detector, portrait, 10, too_large_minimum) == ([], 0)
    assert detector.smallest_findable(*portrait.size, min_size=too_large_minimum) == (
        too_large_minimum
    )


def test_a_large_photo_is_detected_on_a_small_copy_and_mapped_back(
    portrait: Image.Image, portrait_face: Face, detector: HaarDetector
) -> None:
    large = portrait.resize((2048, 2048), Image.Resampling.BICUBIC)
    # The largest is the face; on a copy this large Haar also fires on small texture
    # (its false positives per image are in `make bench`).
    face = detector.detect(large, min_size=40)[0]
    b = portrait_face.box
    assert face.box.iou(Box(4 * b.x, 4 * b.y, 4 * b.width, 4 * b.height)) > 0.8
    # The copy is scaled so that a 40 px face spans the cascade's 24 px window: 0.6.
    assert detector.smallest_findable(2048, 2048, min_size=40) == 40
    assert detector.scanned_pixels(2048, 2048, min_size=40) == 1229**2


def test_the_cap_on_pixels_scanned_raises_the_smallest_face_found() -> None:
    # 12 MP at 0.6 would be 4.3 MP; the 2 MP cap scales it by sqrt(2 / 12) instead, so a
    # face must be 24 / 0.408 = 59 px to span the window.
    capped = HaarDetector(max_pixels=2_000_000)
    assert capped.smallest_findable(4000, 3000, min_size=40) == 59
    assert capped.scanned_pixels(4000, 3000, min_size=40) <= 2_000_000 + 4000 + 3000


def test_threads_share_one_detector(portrait: Image.Image, detector: HaarDetector) -> None:
    results: list[list[Face]] = []
    workers = [
        threading.Thread(target=lambda: results.append(detector.detect(portrait, 40)))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(results) == 3
    assert all(result == results[0] for result in results)


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
