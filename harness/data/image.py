"""Image files for image and multi-image records: decoded with Pillow into RGB uint8 arrays;
resizing is the model's business (Qwen2-VL's smart resize within its pixel bounds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.errors import HarnessError


class ImageDecodeError(HarnessError, RuntimeError):
    """An image could not be read. The message names the path and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"cannot decode image {str(path)!r}: {reason}")
        self.path = str(path)
        self.reason = reason


def load_image(path: str | Path) -> np.ndarray:
    """[H, W, 3] uint8 RGB of an image file (any mode Pillow reads: palette, grey, RGBA...)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageDecodeError(path, "no such file")
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()  # [H, W, 3]
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageDecodeError(path, str(err) or type(err).__name__) from err
