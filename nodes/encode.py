"""Encode Image: a portrait -> its appearance (identity latent, feature pyramid) and reference motion."""

from __future__ import annotations

from . import stages
from .types import FLOAT_APPEARANCE, FLOAT_MODEL


class FloatEncodeImage:
    DESCRIPTION = (
        "Encodes square portraits with the motion auto-encoder: the identity latent and feature pyramid the "
        "decoder renders from, and the motion coefficients of the pose in the picture (the reference motion "
        "the sampled motion starts from). Square images of any size are resized to the model's 512 x 512."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "encode"
    RETURN_TYPES = (FLOAT_APPEARANCE,)
    RETURN_NAMES = ("appearance",)
    OUTPUT_TOOLTIPS = ("The encoded portraits, for Sample Motion and Decode.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (FLOAT_MODEL, {"tooltip": "From FLOAT Load Model."}),
                "portrait": ("IMAGE", {"tooltip": "Square face crops, e.g. from FLOAT Face Crop; a batch gives one animation each."}),
            }
        }

    def encode(self, model, portrait):
        return (stages.encode_portraits(model, portrait),)


NODE_CLASS_MAPPINGS = {"FloatEncodeImage": FloatEncodeImage}
NODE_DISPLAY_NAME_MAPPINGS = {"FloatEncodeImage": "FLOAT Encode Image"}
