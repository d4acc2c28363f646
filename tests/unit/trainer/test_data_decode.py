"""The trainer sees an upload as the server does: same orientation, same pixels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from open_clip.transform import image_transform

from service.imaging import Preprocessor
from service.imaging.decode import ImageLimits
from service.registry.manifest import Preprocess
from service.trainer.data import ImageDataset, Sample
from tests import images

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_image_gives_the_same_tensor_in_trainer_and_server(
    tmp_path: Path, orientation: int
) -> None:
    data, _ = images.exif_rotated_jpeg(orientation)
    path = tmp_path / "rotated.jpg"
    path.write_bytes(data)
    eval_transform = image_transform(224, is_train=False, mean=MEAN, std=STD)
    trained_on, rank = ImageDataset([Sample(path, 2)], eval_transform)[0]
    served = Preprocessor(Preprocess(image_size=224, mean=MEAN, std=STD), ImageLimits(10**7))(data)
    assert rank == 2
    assert torch.equal(trained_on, served)
    if orientation in (6, 8):  # a quarter turn: the stored 64x96 is shown 96x64
        stored_as_is = eval_transform(images.gradient(96, 64).rotate(90, expand=True))
        assert not torch.equal(trained_on, stored_as_is)
