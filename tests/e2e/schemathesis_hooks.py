"""Schemathesis hooks (``SCHEMATHESIS_HOOKS``): every ``format: binary`` value is a real image.

The schema says each ``image`` part is a binary file in an accepted format; that the bytes
decode as an image is what no schema can express. This strategy makes those values PNG or
JPEG images of random size, aspect and content, so positive cases reach a 200 and the
predict path itself is fuzzed. (Registered as a format rather than per media type: for a
media type, schemathesis 4.x's coverage phase sends one part without a filename where the
schema has an array of them.) A raw ``image/*`` body gets schemathesis' own image samples.
"""

from __future__ import annotations

import io

import numpy as np
import schemathesis
from hypothesis import strategies as st
from PIL import Image
from schemathesis.transport.serialization import Binary


def _encoded(fmt: str) -> st.SearchStrategy[bytes]:
    @st.composite
    def draw(draw: st.DrawFn) -> bytes:
        width = draw(st.integers(1, 96))
        # Within the server's default OCLIP_MAX_ASPECT_RATIO of 20 either way.
        height = draw(st.integers(-(-width // 20), min(96, width * 20)))
        seed = draw(st.integers(0, 2**32 - 1))
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, format=fmt)
        return buffer.getvalue()

    return draw()


schemathesis.openapi.format("binary", st.one_of(_encoded("PNG"), _encoded("JPEG")).map(Binary))
