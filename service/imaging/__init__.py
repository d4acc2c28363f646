"""Shared imaging: image bytes -> the tensor a tower reads, the same for the server and the
trainer. ``decode`` checks and decodes (every format's work bounded from its header),
``transform`` turns any Pillow mode into upright RGB and applies the eval transform, and
``faces`` detects and crops faces. It imports nothing of the engine, the API or the trainer.
"""

from service.imaging.decode import (
    ACCEPTED_FORMATS,
    ImageLimits,
    Preprocessor,
    decode_image,
    open_image,
)
from service.imaging.transform import EvalTransform, to_rgb

__all__ = [
    "ACCEPTED_FORMATS",
    "EvalTransform",
    "ImageLimits",
    "Preprocessor",
    "decode_image",
    "open_image",
    "to_rgb",
]
