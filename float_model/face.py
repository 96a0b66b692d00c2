"""Finding the face and cutting FLOAT's square crop around it (FLOAT_SPEC §2).

FLOAT was trained on face crops framed one particular way, so the crop is part of the model:

    face box (x1, y1, x2, y2) -> centre (int((x1+x2)/2), int((y1+y2)/2)),
    half side int(max(int((x2-x1)/2), int((y2-y1)/2)) * 1.6) -> the square, padded with black where it
    leaves the picture -> resized to 512 x 512 (area filter for pictures taller than 360 px, else bicubic)

Two detectors give the box:
- `YuNetDetector` (default): OpenCV's YuNet, whose 232 KB model ships with this package, so cropping
  works offline. Like the official S3FD it was trained on WIDER FACE boxes (forehead to chin, ear to
  ear), so its box goes into the 1.6 margin as it is. It finds faces with scores around 0.9, so its
  threshold is 0.6 rather than S3FD's 0.95. Large pictures are searched on a copy at most 640 px wide.
- `S3FDDetector`: the official detector (face-alignment's S3FD, its 360 px pre-scale and 0.95
  threshold), when the optional `face-alignment` package and its weights are installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from .crop_box import CropBox

YUNET_MODEL = "face_detection_yunet_2023mar.onnx"
MARGIN = 1.6
FACE_CHOICES = ("largest", "best", "left-to-right")


class NoFaceError(ValueError):
    """No face was found; the message says what to try."""


@dataclass(frozen=True)
class FaceBox:
    x1: float
    y1: float
    x2: float
    y2: float
    score: float

    @property
    def area(self) -> float:
        return (self.x2 - self.x1) * (self.y2 - self.y1)


class FaceDetector(Protocol):
    name: str
    threshold: float

    def __call__(self, image: np.ndarray) -> list[FaceBox]:
        """RGB uint8 (H, W, 3) -> faces above the threshold, in the image's pixel coordinates."""


class YuNetDetector:
    name = "YuNet"

    def __init__(self, threshold: float = 0.6, max_side: int = 640, model_path: str | Path | None = None):
        if not hasattr(cv2, "FaceDetectorYN"):
            raise ImportError(f"OpenCV {cv2.__version__} has no FaceDetectorYN: install opencv-python-headless>=4.8")
        self.threshold, self.max_side = threshold, max_side
        path = model_path or resources.files(__package__).joinpath("face_models", YUNET_MODEL)
        self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), threshold, 0.3, 5000)

    def __call__(self, image: np.ndarray) -> list[FaceBox]:
        return [face for face, _ in self.faces_with_points(image)]

    def faces_with_points(self, image: np.ndarray) -> list[tuple[FaceBox, np.ndarray]]:
        """Faces, most certain first, each with its five points (5, 2) in the image's pixels: the eye on the
        image's left, the other eye, the nose tip, the mouth corner on the image's left, the other corner."""
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else image
        self._net.setInputSize((small.shape[1], small.shape[0]))
        _, found = self._net.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        faces = []
        for row in found if found is not None else []:
            x, y, w, h = row[:4] / scale
            faces.append((FaceBox(float(x), float(y), float(x + w), float(y + h), float(row[14])), row[4:14].reshape(5, 2) / scale))
        return sorted(faces, key=lambda item: -item[0].score)


class S3FDDetector:
    """The official detector: face-alignment's S3FD on a copy scaled to 360 px high, boxes above 0.95."""

    name = "S3FD"

    def __init__(self, weights: str | Path, threshold: float = 0.95, device: str = "cpu"):
        try:
            from face_alignment.detection.sfd import FaceDetector as SFD
        except ImportError as error:
            raise ImportError("the S3FD detector needs the optional package: pip install face-alignment (or -e '.[s3fd]')") from error
        self.threshold = threshold
        self._detector = SFD(device=device, path_to_detector=str(weights))

    def __call__(self, image: np.ndarray) -> list[FaceBox]:
        mult = 360 / image.shape[0]
        interpolation = cv2.INTER_AREA if mult < 1 else cv2.INTER_CUBIC
        small = cv2.resize(image, None, fx=mult, fy=mult, interpolation=interpolation)
        boxes = self._detector.detect_from_image(small)
        faces = [FaceBox(int(x1 / mult), int(y1 / mult), int(x2 / mult), int(y2 / mult), float(s)) for x1, y1, x2, y2, s in boxes]
        return sorted((f for f in faces if f.score > self.threshold), key=lambda face: -face.score)


def as_rgb(image: np.ndarray, background: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """Grey (H, W) or (H, W, 1), RGB, or RGBA (composited over `background`) -> RGB uint8 (H, W, 3).
    Float images are taken to be in [0, 1]."""
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    if image.shape[2] == 4:
        alpha = image[:, :, 3:].astype(np.float32) / 255
        blended = image[:, :, :3] * alpha + np.asarray(background, dtype=np.float32) * (1 - alpha)
        return blended.round().astype(np.uint8)
    return image


def select_face(faces: Sequence[FaceBox], which: str = "largest", index: int = 0) -> FaceBox:
    """The face to animate: the largest, the best-scoring (the official choice), or the index-th from the left."""
    if which not in FACE_CHOICES:
        raise ValueError(f"unknown face choice {which!r}: choose one of {', '.join(FACE_CHOICES)}")
    if which == "largest":
        return max(faces, key=lambda face: face.area)
    if which == "best":
        return max(faces, key=lambda face: face.score)
    ordered = sorted(faces, key=lambda face: face.x1 + face.x2)
    if not 0 <= index < len(ordered):
        raise ValueError(f"face index {index} asked for, but {len(ordered)} face(s) were found (indices 0 to {len(ordered) - 1}, left to right)")
    return ordered[index]


def crop_box(face: FaceBox, image_width: int, image_height: int, margin: float = MARGIN) -> CropBox:
    """The official crop square around a face box, with its integer truncations."""
    x1, y1, x2, y2 = (int(v) for v in (face.x1, face.y1, face.x2, face.y2))
    half = int(max(int((y2 - y1) / 2), int((x2 - x1) / 2)) * margin)
    centre_y, centre_x = int((y1 + y2) / 2), int((x1 + x2) / 2)
    return CropBox(centre_x - half, centre_y - half, 2 * half, image_width, image_height)


def centre_box(image_width: int, image_height: int) -> CropBox:
    """The largest centred square: the fallback when no face is found and that is asked for."""
    side = min(image_width, image_height)
    return CropBox((image_width - side) // 2, (image_height - side) // 2, side, image_width, image_height)


def resize_square(picture: np.ndarray, size: int) -> np.ndarray:
    """A square picture (S, S, C) at size x size: area averaging when shrinking (no aliasing), bicubic when
    enlarging (sharper than bilinear). For crops that are already square; `cut_crop` makes them."""
    if picture.shape[0] == size:
        return picture
    interpolation = cv2.INTER_AREA if picture.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(picture, (size, size), interpolation=interpolation)


def cut_crop(image: np.ndarray, box: CropBox, size: int = 512) -> np.ndarray:
    """The square of `box` from an RGB uint8 image, black where it leaves the picture, resized to `size`.

    Area filtering for pictures taller than 360 px, else bicubic: the official choice, made from the
    picture's height rather than the crop's own scale (FLOAT_SPEC §10.14).
    """
    height, width = image.shape[:2]
    square = np.zeros((box.size, box.size, 3), dtype=np.uint8)
    top, left = max(box.top, 0), max(box.left, 0)
    bottom, right = min(box.bottom, height), min(box.right, width)
    if bottom > top and right > left:
        square[top - box.top : bottom - box.top, left - box.left : right - box.left] = image[top:bottom, left:right]
    interpolation = cv2.INTER_AREA if 360 / height < 1 else cv2.INTER_CUBIC
    return cv2.resize(square, (size, size), interpolation=interpolation)


def find_crop(
    image: np.ndarray,
    detector: FaceDetector | None = None,
    which: str = "largest",
    index: int = 0,
    margin: float = MARGIN,
    if_no_face: str = "error",
) -> CropBox:
    """Detect, choose a face and place the crop square. `if_no_face`: "error" or "centre" (the centred square)."""
    detector = detector or YuNetDetector()
    height, width = image.shape[:2]
    faces = detector(image)
    if faces:
        return crop_box(select_face(faces, which, index), width, height, margin)
    if if_no_face == "centre":
        return centre_box(width, height)
    raise NoFaceError(
        f"no face found in the {width}x{height} image by {detector.name} (score threshold {detector.threshold}): use a "
        f"photo with a clearly visible, roughly frontal face, lower the detection threshold, or use the centred crop"
    )


def crop_portrait(image: np.ndarray, size: int = 512, **find: object) -> tuple[np.ndarray, CropBox]:
    """Any RGB/RGBA/grey picture -> (the 512 x 512 RGB uint8 face crop, its box in the picture).
    Keyword arguments go to `find_crop`."""
    image = as_rgb(image)
    box = find_crop(image, **find)
    return cut_crop(image, box, size), box
