"""``--crop faces``: train and evaluate on the largest face of each image, cut by the same
detector and crop code the server uses for ``faces=true``.

Each face crop is written once as a lossless PNG and the samples are pointed at it, so the
rest of the data path (augmentation, feature caching, DDP sharding) is unchanged and the
detector runs once per image, not once per epoch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from PIL import Image, ImageOps

from service.imaging import to_rgb
from service.imaging.faces import FaceConfig, FaceCropper, build_cropper
from service.registry.files import atomic_file
from service.trainer.data import DataError, Sample

log = logging.getLogger(__name__)

Crop = Literal["none", "faces"]


def face_cropper(margin: float, size: int) -> FaceCropper:
    """The default detector and limits, with this task's margin and crop size."""
    return build_cropper(FaceConfig(margin=margin), size)


def face_crop_samples(samples: list[Sample], out_dir: Path, cropper: FaceCropper) -> list[Sample]:
    """Samples pointing at the crop of each image's largest face; faceless images are skipped.

    Images are read upright (EXIF orientation applied) and in RGB, as the server decodes them.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    kept, faceless = [], []
    for number, sample in enumerate(samples):
        with Image.open(sample.path) as image:
            upright = to_rgb(ImageOps.exif_transpose(image) or image)
        crop = cropper.largest(upright)
        if crop is None:
            faceless.append(sample.path)
            continue
        target = out_dir / f"{number:06d}-{sample.path.stem}.png"
        _write_atomically(crop, target)
        kept.append(Sample(target, sample.rank))
    if faceless:
        log.warning(
            "%d of %d images have no face (min %d px) and are skipped; first: %s",
            len(faceless),
            len(samples),
            cropper.min_size,
            ", ".join(str(p) for p in faceless[:5]),
        )
    if not kept:
        raise DataError(f"no face found in any of the {len(samples)} images")
    return kept


def crop_samples(
    crop: Crop, margin: float, size: int, out_dir: Path, **splits: list[Sample]
) -> list[list[Sample]]:
    """Each split as it is (``none``) or as face crops under ``out_dir/<split>`` (``faces``)."""
    if crop == "none":
        return list(splits.values())
    cropper = face_cropper(margin, size)
    return [face_crop_samples(s, out_dir / name, cropper) for name, s in splits.items()]


def _write_atomically(image: Image.Image, target: Path) -> None:
    """DDP ranks write the same crops: each writes a private file and renames it in place."""
    atomic_file(target, lambda staging: image.save(staging, format="PNG"))
