"""Face Crop: any picture -> the 512 x 512 square around the face that FLOAT animates, and where it was."""

from __future__ import annotations

from ..float_model.face import FACE_CHOICES, MARGIN
from . import stages
from .types import FLOAT_CROP

FACE_INPUTS = {
    "face": (
        list(FACE_CHOICES),
        {"default": "largest", "tooltip": "Which face to animate when there are several: the largest, the most certain, or the face_index-th from the left."},
    ),
    "face_index": ("INT", {"default": 0, "min": 0, "max": 63, "tooltip": "With face = left-to-right: 0 is the leftmost face."}),
    "margin": (
        "FLOAT",
        {"default": MARGIN, "min": 1.0, "max": 3.0, "step": 0.05, "tooltip": "Crop size relative to the face box; 1.6 is the official framing the model was trained on."},
    ),
    "threshold": (
        "FLOAT",
        {"default": stages.DETECTION_THRESHOLD, "min": 0.05, "max": 0.99, "step": 0.05, "tooltip": "Face detector confidence needed; lower it for faces it misses (drawings, profiles)."},
    ),
    "if_no_face": (
        ["error", "centre"],
        {"default": "error", "tooltip": "No face found: stop with a message, or use the centred square of the picture."},
    ),
}


class FloatFaceCrop:
    DESCRIPTION = (
        "Finds the face (YuNet detector, bundled) and cuts the square FLOAT was trained on: centred on the face, "
        "1.6 x its size, black where it leaves the picture, resized to 512 x 512. RGBA and grey pictures are fine."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "crop"
    RETURN_TYPES = ("IMAGE", FLOAT_CROP)
    RETURN_NAMES = ("portrait", "crop")
    OUTPUT_TOOLTIPS = ("The 512 x 512 face crops, for Encode Image.", "Where each crop sits in its picture, for pasting the animation back.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {"tooltip": "Pictures with a face, any size."}), **FACE_INPUTS}}

    def crop(self, image, face, face_index, margin, threshold, if_no_face):
        return stages.crop_faces(image, face, face_index, margin, threshold, if_no_face)


NODE_CLASS_MAPPINGS = {"FloatFaceCrop": FloatFaceCrop}
NODE_DISPLAY_NAME_MAPPINGS = {"FloatFaceCrop": "FLOAT Face Crop"}
