"""Face detection with the Haar fallback on real photographs (scikit-image's astronaut
portrait; crops are in test_face_crops.py, MTCNN in test_mtcnn.py).

Hand-checked once: the Haar box of ``astronaut()`` is about (177, 66, 95, 95); its crop, saved
as PNG and looked at, shows the whole face centred, hair to chin. Her eyes are at about
(201, 100) and (247, 103) (OpenCV's eye cascade, confirmed on the crop).
"""

from __future__ import annotations

import threading

import pytest
from PIL import Image

from service.imaging import ImageLimits, Preprocessor
from service.imaging.faces import (
    Box,
    Face,
    HaarDetector,
    Point,
    detect_faces,
)
from service.registry.manifest import Preprocess
from tests import images

data = pytest.importorskip("skimage.data")

FACE_CENTRE = Point(224, 112)  # between the eyes and the nose tip, checked by hand
SCALES = (1.0, 0.6, 0.4)  # pasted upright; then one mirrored copy at 0.8


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
