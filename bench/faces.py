"""``python -m bench.faces [--repeat N]``: face detection and crop cost per image.

Detection runs once per image in the preprocessing stage, so its cost adds to every
``faces=true`` request. Measured on the scikit-image astronaut portrait at 224 px and
inside a 12-megapixel (4000x3000) frame, at the default detection side and a larger one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from PIL import Image

from service.config import Settings
from service.engine.faces import FaceCropper, HaarDetector


def portrait() -> Image.Image:
    from skimage import data  # test extra: the only real face photos available offline

    return Image.fromarray(data.astronaut())


def frames() -> dict[str, Image.Image]:
    face = portrait()
    twelve_mp = Image.new("RGB", (4000, 3000), (120, 120, 120))
    twelve_mp.paste(face.resize((3000, 3000), Image.Resampling.BICUBIC), (500, 0))
    return {"224 px": face.resize((224, 224), Image.Resampling.BICUBIC), "12 MP": twelve_mp}


def median_ms(action: Callable[[], object], repeat: int) -> float:
    action()  # warm-up: loads the cascade in this thread
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    settings = Settings()
    print("| image | detection side | faces | detect ms | crop ms | smallest face found px |")
    print("|---|---|---|---|---|---|")
    for side in (settings.face_detect_side, 1024):
        cropper = FaceCropper(
            HaarDetector(max_side=side), settings.face_margin, 224, min_size=settings.min_face_px
        )
        for name, image in frames().items():
            detections = cropper.detect(image)
            detect = median_ms(lambda c=cropper, i=image: c.detect(i), args.repeat)
            faces = detections.faces
            crop = (
                median_ms(lambda c=cropper, i=image, f=faces: c.crop(i, f[0]), args.repeat)
                if faces
                else float("nan")
            )
            smallest = cropper.detector.smallest_findable(*image.size, settings.min_face_px)
            print(
                f"| {name} | {side} | {detections.found} | {detect:.1f} | {crop:.1f} | {smallest} |"
            )


if __name__ == "__main__":
    main()
