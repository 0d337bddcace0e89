"""Image preprocessing shared by training's eval transform and the runtime, in numpy and Pillow.

Both sides call these functions, so the pixels a device feeds the image graph are the pixels the
student was evaluated on: decode, EXIF-orient, convert to RGB (transparency over white), resize the
shorter side (bicubic, or the model's own filter) and centre crop, or squash both sides to the size
(SigLIP-style models), scale to [0, 1]. Mean/std live inside the graph. The sizes and offsets are
torchvision's (the longer side truncated, the crop offset rounded), as open_clip's transforms compute them.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ClippingEdgeError

ImageInput = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]

# Decompression-bomb guard: a 100 kB PNG can claim billions of pixels. Checked on the header before
# decoding; resizing then never allocates more than the output (see resize_center_crop).
MAX_PIXELS = 90_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own check, for formats that decode in Image.open


def _open(source: ImageInput) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3) or (source.ndim == 3 and source.shape[2] not in (1, 3, 4)) \
                or 0 in source.shape:
            raise ClippingEdgeError(f"image array must be uint8 HxW or HxWxC with C 1, 3 or 4 and no empty side, got "
                                    f"{source.dtype} {source.shape}: convert it to RGB uint8 first")
        return Image.fromarray(source[..., 0] if source.ndim == 3 and source.shape[2] == 1 else source)
    if not isinstance(source, (str, os.PathLike, bytes)):
        raise ClippingEdgeError(f"an image is a path, bytes, a Pillow image or a uint8 array, got {type(source).__name__}")
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise ClippingEdgeError(f"image {name} does not exist: check the path")
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Image.DecompressionBombError:
        raise ClippingEdgeError(f"image {name} claims more than {MAX_PIXELS:,} pixels (a decompression bomb?): "
                                "downscale it first") from None
    except UnidentifiedImageError:
        raise ClippingEdgeError(f"image {name} is not a readable image file: pass a PNG, JPEG, WebP, BMP or GIF") from None
    except (OSError, ValueError, SyntaxError) as exc:  # ValueError: Pillow's limit on text and ICC chunks (zTXt/iCCP bombs)
        raise ClippingEdgeError(f"image {name} is truncated or corrupt, or carries oversized metadata ({str(exc)[:120]}): "
                                "re-encode or drop it") from None
    w, h = image.size
    if w * h > MAX_PIXELS:
        raise ClippingEdgeError(f"image {name} is {w}x{h} pixels, over the {MAX_PIXELS:,} pixel limit: downscale it first")
    try:
        image.load()
    except Image.DecompressionBombError:
        raise ClippingEdgeError(f"image {name} claims more than {MAX_PIXELS:,} pixels (a decompression bomb?): "
                                "downscale it first") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ClippingEdgeError(f"image {name} is truncated or corrupt ({exc}): re-encode or drop it") from None
    return image


# Modes whose values have no one 8-bit reading: a 12-bit scan in a 16-bit PNG is near black at full scale and
# white under Pillow's clipping conversion. The display window is the producer's choice, so it is asked for.
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _to_rgb(image: Image.Image, name: str = "<image>") -> Image.Image:
    mode = image.mode
    if mode in WIDE_MODES:
        raise ClippingEdgeError(f"image {name} has {'16-bit' if mode.startswith('I;16') else '32-bit'} samples (mode {mode}), "
                                "which have no one 8-bit reading: save it as 8-bit RGB or grayscale with the display "
                                "window you want (full range: value / 257)")
    if mode == "P":
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB") if mode != "RGB" else image


def load_image(source: ImageInput) -> Image.Image:
    """Decode any supported input into an upright 8-bit RGB Pillow image."""
    image = _open(source)
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # broken EXIF blocks are common; orientation is then left as stored
        pass
    return _to_rgb(image, "<bytes>" if isinstance(source, bytes) else str(source)[:200] if isinstance(source, (str, os.PathLike)) else "<image>")


RESIZE_MODES = ("shortest", "squash")
FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the image tower's input: recorded with the weights and in every manifest."""
    size: int
    resize: str = "shortest"  # shortest: the shorter side to `size`, then the centre square; squash: both sides
    interpolation: str = "bicubic"  # bicubic or bilinear (Pillow's filters, antialiased when shrinking)

    def __post_init__(self):
        if self.resize not in RESIZE_MODES or self.interpolation not in FILTERS:
            raise ClippingEdgeError(f"preprocessing {self.resize!r} / {self.interpolation!r} is unknown: resize is one of "
                                    f"{', '.join(RESIZE_MODES)}, interpolation one of {', '.join(FILTERS)}")

    def to_json(self) -> dict:
        return {"size": self.size, "resize": self.resize, "interpolation": self.interpolation}


def as_preprocess(spec: "int | Preprocess") -> Preprocess:
    return spec if isinstance(spec, Preprocess) else Preprocess(int(spec))


# Up to this aspect ratio the whole image is resized and then cropped, as torchvision (open_clip) does; beyond
# it only the central square is resized (Pillow's `box`), so a 1 x 1 000 000 image never becomes size x 10^6
# pixels. The two sample the same positions, but Pillow may run its two passes in the other order for a box,
# and the 8-bit rounding between them differs by a few levels on fine detail.
MAX_WHOLE_ASPECT = 4


def resize_center_crop(image: Image.Image, size: int, interpolation: str = "bicubic") -> Image.Image:
    """Resize the shorter side to `size` and keep the central `size` x `size` square."""
    w, h = image.size
    # torchvision's Resize: the longer side truncated, not rounded
    nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    if (nw, nh) != (w, h) and max(nw, nh) <= MAX_WHOLE_ASPECT * size:
        image, (w, h) = image.resize((nw, nh), FILTERS[interpolation]), (nw, nh)
    if (nw, nh) == (w, h):
        return image.crop((left, top, left + size, top + size))
    # The crop offsets in the resized image, mapped back to source coordinates.
    sx, sy = w / nw, h / nh
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    return image.resize((size, size), FILTERS[interpolation], box=box)


def resize_image(image: Image.Image, spec: "int | Preprocess") -> Image.Image:
    spec = as_preprocess(spec)
    if spec.resize == "squash":
        return image if image.size == (spec.size, spec.size) else image.resize((spec.size, spec.size), FILTERS[spec.interpolation])
    return resize_center_crop(image, spec.size, spec.interpolation)


def to_chw_float(image: Image.Image) -> np.ndarray:
    """RGB uint8 HxWx3 -> float32 3xHxW in [0, 1]."""
    return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / np.float32(255.0)


def preprocess_image(source: ImageInput, size: "int | Preprocess") -> np.ndarray:
    return to_chw_float(resize_image(load_image(source), size))


def as_image_list(images: Sequence[ImageInput] | ImageInput) -> list[ImageInput]:
    """One image (a path, bytes, a Pillow image or an HxWxC frame) or a sequence of them, as a list."""
    if isinstance(images, (str, os.PathLike, bytes, Image.Image)) or (isinstance(images, np.ndarray) and images.ndim in (2, 3)):
        return [images]
    try:
        return list(images)
    except TypeError:
        raise ClippingEdgeError(f"images are a path, bytes, a Pillow image, a uint8 array or a list of them, got "
                                f"{type(images).__name__}") from None


def preprocess_batch(sources: Sequence[ImageInput], size: "int | Preprocess") -> np.ndarray:
    """A batch of images -> float32 (B, 3, size, size) in [0, 1], ready for the image tower."""
    if len(sources) == 0:
        side = as_preprocess(size).size
        return np.zeros((0, 3, side, side), np.float32)
    return np.stack([preprocess_image(s, size) for s in sources])
