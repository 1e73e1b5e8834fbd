"""Mailpit's part thumbnail: a 180x120 JPEG of an image part (pure; Pillow).

As Mailpit's handler (server/apiv1/thumbnails.go) makes it: an image
smaller than 180x120 in either side is scaled to fit, a larger one is
scaled and cropped to fill; either is centred on white (transparent images
get no black background), EXIF orientation applied, JPEG quality 70.
Anything that is not an image it can read, and any image past the bounds,
gives a blank white thumbnail, never an error.

Bounds, because the image is the sender's: at most MAX_BYTES of input,
only the common web formats (each decoder is attack surface), and at most
MAX_PIXELS decoded pixels (Mailpit's 20 MP: 80 MB of RGBA), checked from
the image's header before anything is decoded. It runs in a worker process
(mimework.py), never on the API's event loop.
"""

from __future__ import annotations

import functools
import io
import warnings

from PIL import Image, ImageOps

WIDTH, HEIGHT = 180, 120
QUALITY = 70
MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 20_000_000
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=QUALITY)
    return out.getvalue()


@functools.cache
def blank() -> bytes:
    return _jpeg(Image.new("RGB", (WIDTH, HEIGHT), "white"))


def _scaled(image: Image.Image) -> Image.Image:
    if image.width < WIDTH or image.height < HEIGHT:
        fitted = image.copy()
        fitted.thumbnail((WIDTH, HEIGHT), Image.Resampling.LANCZOS)  # only ever shrinks
        return fitted
    return ImageOps.fit(image, (WIDTH, HEIGHT), Image.Resampling.LANCZOS)


def thumbnail(data: bytes) -> bytes:
    """The thumbnail of `data` (an image part's bytes), or a blank one."""
    if len(data) > MAX_BYTES:
        return blank()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                if image.width * image.height > MAX_PIXELS:
                    return blank()
                image.draft("RGB", (WIDTH * 2, HEIGHT * 2))  # JPEG: decode at a smaller scale
                oriented = ImageOps.exif_transpose(image).convert("RGBA")
                scaled = _scaled(oriented)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning):
        return blank()  # not an image Pillow reads, or a broken one
    canvas = Image.new("RGB", (WIDTH, HEIGHT), "white")
    canvas.paste(scaled, ((WIDTH - scaled.width) // 2, (HEIGHT - scaled.height) // 2), scaled)
    return _jpeg(canvas)
