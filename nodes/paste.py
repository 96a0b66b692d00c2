"""Paste Back: the animated face crops put back into the photo (or video frames) they were cut from."""

from __future__ import annotations

from . import stages
from .types import FLOAT_CROP


FEATHER_INPUT = ("FLOAT", {"default": 0.1, "min": 0.0, "max": 0.5, "step": 0.01, "tooltip": "Width of the soft edge of the pasted square, as a fraction of its side."})


class FloatPasteBack:
    DESCRIPTION = (
        "Puts the animated crops back into the original picture at its full resolution: feathered edges, colours "
        "matched to the picture, the rest of the picture untouched. Give one photo per portrait, or the frames of "
        "a video for one portrait. Out: IMAGE for upscalers, face restorers and video nodes, and the blend MASK."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "paste"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("images", "mask")
    OUTPUT_TOOLTIPS = ("The original pictures with the animation in them.", "Where the animation was blended in (one per portrait).")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": ("IMAGE", {"tooltip": "The animated crops, from FLOAT Decode."}),
                "crop": (FLOAT_CROP, {"tooltip": "From FLOAT Face Crop: where each crop was cut."}),
                "original": ("IMAGE", {"tooltip": "The picture(s) given to FLOAT Face Crop, or a video's frames."}),
                "feather": FEATHER_INPUT,
                "color_match": ("BOOLEAN", {"default": True, "tooltip": "Match the animation's colours to the picture under the blend."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Your own blend mask over the crop (e.g. a face-parsing mask) instead of the feathered square."}),
            },
        }

    def paste(self, frames, crop, original, feather, color_match, mask=None):
        return stages.paste_frames(frames, crop, original, feather, color_match, mask)


NODE_CLASS_MAPPINGS = {"FloatPasteBack": FloatPasteBack}
NODE_DISPLAY_NAME_MAPPINGS = {"FloatPasteBack": "FLOAT Paste Back"}
