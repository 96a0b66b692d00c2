"""Where FLOAT's square crop sits in the original picture: the link between the face crop and paste-back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CropBox:
    """A square of `size` pixels with its top-left corner at (left, top), in the pixel coordinates of the
    original image (image_width x image_height). It may reach past the image's borders: the crop fills
    that part with black, as the official preprocessing pads the image before cropping."""

    left: int
    top: int
    size: int
    image_width: int
    image_height: int

    def __post_init__(self) -> None:
        if self.size < 1 or self.image_width < 1 or self.image_height < 1:
            raise ValueError(f"invalid crop box {self}")

    @property
    def right(self) -> int:
        return self.left + self.size

    @property
    def bottom(self) -> int:
        return self.top + self.size

    def scale(self, output_size: int = 512) -> float:
        """Output pixels per original pixel when the square is resized to `output_size`."""
        return output_size / self.size
