"""Decode: motion latents + appearance -> video frames as a ComfyUI IMAGE batch."""

from __future__ import annotations

from . import stages
from .types import FLOAT_APPEARANCE, FLOAT_MODEL, FLOAT_MOTION

BATCH_SIZE_INPUT = (
    "INT",
    {
        "default": 1,
        "min": 1,
        "max": 256,
        "tooltip": "Frames rendered per decoder call. 1 reproduces the official frames bit for bit; 8 to 32 is faster on GPUs (frames differ only by rounding). Cancel stops after the current batch.",
    },
)


class FloatDecode:
    DESCRIPTION = (
        "Renders the frames: the motion auto-encoder's decoder warps and paints the portrait for each motion "
        "latent. Out: 512 x 512 frames (all frames of clip 1, then clip 2 ...), for Create Video, Video Combine "
        "or any IMAGE node."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "decode"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The video frames.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (FLOAT_MODEL, {"tooltip": "From FLOAT Load Model."}),
                "appearance": (FLOAT_APPEARANCE, {"tooltip": "From FLOAT Encode Image: the face to render."}),
                "motion": (FLOAT_MOTION, {"tooltip": "From FLOAT Sample Motion."}),
                "batch_size": BATCH_SIZE_INPUT,
            }
        }

    def decode(self, model, appearance, motion, batch_size):
        return (stages.decode(model, appearance, motion, batch_size),)


NODE_CLASS_MAPPINGS = {"FloatDecode": FloatDecode}
NODE_DISPLAY_NAME_MAPPINGS = {"FloatDecode": "FLOAT Decode"}
