"""A corpus of malformed and unusual uploads, each with the answer the contract promises."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tests import images


@dataclass(frozen=True)
class Case:
    name: str
    status: int
    code: str | None  # None for a 200
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None
    content: bytes | None = None
    headers: dict[str, str] | None = None
    data: dict[str, str] | None = None


def part(data: bytes, filename: str = "x.img", content_type: str = "image/jpeg") -> list:
    return [("image", (filename, data, content_type))]


def png_with_header_size(width: int, height: int) -> bytes:
    """A tiny real PNG whose IHDR claims ``width`` x ``height`` (CRC fixed up)."""
    data = bytearray(images.png(8, 8))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def png_with_bad_crc() -> bytes:
    data = bytearray(images.png())
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4 : idat])[0]
    data[idat + 4 + length] ^= 0xFF  # first CRC byte of IDAT
    return bytes(data)


def jpeg_with_garbage_exif() -> bytes:
    exif = b"Exif\x00\x00MM\x00*" + bytes(range(256)) * 4
    return images.encode(images.gradient(), "JPEG", exif=exif)


def multipage_tiff() -> bytes:
    buffer = io.BytesIO()
    frames = [images.gradient(seed=s) for s in range(3)]
    frames[0].save(buffer, format="TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def multipart(boundary: str, headers: str, payload: bytes, closed: bool) -> bytes:
    """One hand-written part named "image" (``headers`` after its name)."""
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"{headers}\r\n\r\n'
    tail = f"\r\n--{boundary}--\r\n".encode() if closed else b""
    return head.encode() + payload + tail


def encoded(make: Callable[[], Image.Image], fmt: str, **params: object) -> bytes:
    return images.encode(make(), fmt, **params)


def cases() -> list[Case]:
    boundary = "B0undary"
    variants = images.variants()
    return [
        Case("empty-file", 422, "invalid_image", files=part(b"")),
        Case("text-file", 415, "unsupported_media_type", files=part(b"hello, world\n" * 20)),
        Case(
            "pdf",
            415,
            "unsupported_media_type",
            files=part(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj"),
        ),
        Case(
            "svg",
            415,
            "unsupported_media_type",
            files=part(b'<svg xmlns="http://www.w3.org/2000/svg"/>', "a.svg", "image/svg+xml"),
        ),
        Case(
            "html",
            415,
            "unsupported_media_type",
            files=part(b"<html><body>hi</body></html>", "a.html", "text/html"),
        ),
        Case("truncated-jpeg", 422, "invalid_image", files=part(images.jpeg()[:400])),
        Case(
            "truncated-png",
            422,
            "invalid_image",
            files=part(images.png()[:-60], "a.png", "image/png"),
        ),
        Case(
            "jpeg-header-only",
            422,
            "invalid_image",
            files=part(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
        ),
        Case(
            "png-signature-only",
            415,
            "unsupported_media_type",
            files=part(b"\x89PNG\r\n\x1a\n", "a.png", "image/png"),
        ),
        Case(
            "png-bad-crc",
            200,  # Pillow does not check IDAT CRCs; the pixels decode
            None,
            files=part(png_with_bad_crc(), "a.png", "image/png"),
        ),
        Case(
            "bomb-dimensions",
            413,
            "image_too_large",
            files=part(png_with_header_size(100_000, 100_000), "a.png", "image/png"),
        ),
        Case(
            "extreme-aspect",
            422,
            "invalid_image",
            files=part(encoded(lambda: Image.new("RGB", (4000, 2)), "PNG"), "a.png", "image/png"),
        ),
        Case(
            "ico-not-accepted",
            415,
            "unsupported_media_type",
            files=part(encoded(images.gradient, "ICO"), "a.ico", "image/x-icon"),
        ),
        Case("png-labelled-jpeg", 200, None, files=part(images.png(), "a.jpg", "image/jpeg")),
        Case("jpeg-labelled-pdf", 200, None, files=part(images.jpeg(), "a.pdf", "application/pdf")),
        Case(
            "one-pixel",
            200,
            None,
            files=part(
                encoded(lambda: Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), "a.png", "image/png"
            ),
        ),
        Case(
            "animated-gif", 200, None, files=part(variants["gif_animated"][0], "a.gif", "image/gif")
        ),
        Case("gray16-png", 200, None, files=part(variants["gray16"][0], "a.png", "image/png")),
        Case(
            "palette-transparency",
            200,
            None,
            files=part(variants["palette_transparent"][0], "a.png", "image/png"),
        ),
        Case("cmyk-jpeg", 200, None, files=part(variants["cmyk"][0])),
        Case("multipage-tiff", 200, None, files=part(multipage_tiff(), "a.tif", "image/tiff")),
        Case(
            "webp-lossless",
            200,
            None,
            files=part(encoded(images.gradient, "WEBP", lossless=True), "a.webp", "image/webp"),
        ),
        Case("garbage-exif", 200, None, files=part(jpeg_with_garbage_exif())),
        Case(
            "float-grayscale",
            200,
            None,
            files=part(
                encoded(
                    lambda: Image.fromarray(
                        np.linspace(0, 3, 64 * 64, dtype=np.float32).reshape(64, 64), "F"
                    ),
                    "TIFF",
                ),
                "a.tif",
                "image/tiff",
            ),
        ),
        Case("unicode-filename", 200, None, files=part(images.jpeg(), "фото 📷.jpg")),
        Case(
            "no-image-part",
            422,
            "no_image",
            files=[("photo", ("a.jpg", images.jpeg(), "image/jpeg"))],
        ),
        Case(
            "text-field-as-image",
            422,
            "invalid_request",
            content=multipart(boundary, "", b"hello", closed=True),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        ),
        Case("too-many-images", 413, "too_many_images", files=part(images.jpeg()) * 5),
        Case(
            "json-body",
            415,
            "unsupported_media_type",
            content=b'{"image": "x"}',
            headers={"content-type": "application/json"},
        ),
        Case("no-content-type", 415, "unsupported_media_type", content=images.jpeg()),
        Case(
            "multipart-without-boundary",
            400,
            "malformed_request",
            content=b"--x\r\n",
            headers={"content-type": "multipart/form-data"},
        ),
        Case(
            "multipart-unterminated",
            422,  # the parser drops the incomplete part: no complete image arrived
            "no_image",
            content=multipart(
                boundary,
                '; filename="a.jpg"\r\nContent-Type: image/jpeg',
                images.jpeg()[:100],
                closed=False,
            ),
            headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        ),
        Case(
            "raw-png-body", 200, None, content=images.png(), headers={"content-type": "image/png"}
        ),
        Case(
            "raw-garbage-body",
            415,
            "unsupported_media_type",
            content=b"\x00" * 100,
            headers={"content-type": "image/png"},
        ),
    ]
