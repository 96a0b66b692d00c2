"""Motion editing in FLOAT's latent space: motion-basis (lambda) edits, head-motion damping, smoothing, and
resampling to another frame rate."""

from __future__ import annotations

import torch

from . import stages
from .types import FLOAT_APPEARANCE, FLOAT_MODEL, FLOAT_MOTION

FPS_CHOICES = {"24": 24.0, "25": 25.0, "29.97": 30000 / 1001, "30": 30.0, "50": 50.0, "60": 60.0}


def parse_coefficients(text: str, count: int, what: str) -> torch.Tensor | None:
    """'3: 1.5, 7: 0' (direction: value) -> a (count,) tensor, or None for an empty text. Unnamed directions
    keep the neutral value (1 for scales, 0 for offsets)."""
    entries = [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]
    if not entries:
        return None
    values = torch.full((count,), 1.0 if what == "scales" else 0.0)
    for entry in entries:
        index, separator, value = entry.partition(":")
        try:
            direction, number = int(index), float(value)
        except ValueError:
            direction = number = None
        if not separator or direction is None or not 0 <= direction < count:
            raise ValueError(f"motion {what}: {entry!r} is not 'direction: value' with a direction from 0 to {count - 1}")
        values[direction] = number
    return values


class FloatEditMotion:
    DESCRIPTION = (
        "Edits motion along FLOAT's 20 learned motion directions (the paper's lambda coefficients): scale or shift "
        "any of them; damp or exaggerate movement around the portrait's own pose (less head sway); smooth it over "
        "time. Directions are learned, not named: try one at a time to see what it moves."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "edit"
    RETURN_TYPES = (FLOAT_MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = ("The edited motion, for Decode.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (FLOAT_MODEL, {"tooltip": "From FLOAT Load Model: its motion basis."}),
                "appearance": (FLOAT_APPEARANCE, {"tooltip": "From FLOAT Encode Image: the portrait's own pose, which damping moves towards."}),
                "motion": (FLOAT_MOTION, {"tooltip": "From FLOAT Sample Motion, Video Motion, Blend or Load Motion."}),
                "movement": (
                    "FLOAT",
                    {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05, "tooltip": "Movement around the portrait's pose: 1 unchanged, 0.5 calmer, 0 frozen, above 1 livelier."},
                ),
                "smoothing": (
                    "FLOAT",
                    {"default": 0.0, "min": 0.0, "max": 2.0, "step": 0.01, "tooltip": "Temporal smoothing in seconds (Gaussian width); 0.04-0.1 removes jitter, more slows the lips too."},
                ),
                "direction_scales": (
                    "STRING",
                    {"default": "", "multiline": True, "tooltip": "Scale motion directions: 'direction: factor' pairs, e.g. '0: 1.5, 4: 0'. Directions 0-19; empty: none."},
                ),
                "direction_offsets": (
                    "STRING",
                    {"default": "", "multiline": True, "tooltip": "Shift motion directions: 'direction: amount' pairs, e.g. '2: 0.3'. Empty: none."},
                ),
            }
        }

    def edit(self, model, appearance, motion, movement, smoothing, direction_scales, direction_offsets):
        count = model.model.config.motion_autoencoder.motion_dim
        scales = parse_coefficients(direction_scales, count, "scales")
        offsets = parse_coefficients(direction_offsets, count, "offsets")
        return (stages.edit(model, appearance, motion, movement, smoothing, scales, offsets),)


class FloatResampleMotion:
    DESCRIPTION = (
        "The same motion at another frame rate (FLOAT moves at 25 fps): interpolated in the latent space, as many "
        "frames as the audio lasts, so the video stays in sync at 24, 29.97, 30, 50 or 60 fps."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "resample"
    RETURN_TYPES = (FLOAT_MOTION, "FLOAT", "INT")
    RETURN_NAMES = ("motion", "fps", "frame_count")
    OUTPUT_TOOLTIPS = ("The resampled motion, for Decode.", "The new frame rate, for Create Video.", "Frames per clip.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "motion": (FLOAT_MOTION, {"tooltip": "Any FLOAT motion."}),
                "fps": (list(FPS_CHOICES), {"default": "30", "tooltip": "The frame rate of the video to make (29.97 is NTSC's 30000/1001)."}),
            }
        }

    def resample(self, motion, fps):
        resampled = stages.resample(motion, FPS_CHOICES[fps])
        return (resampled, resampled.fps, resampled.latents.shape[1])


NODE_CLASS_MAPPINGS = {"FloatEditMotion": FloatEditMotion, "FloatResampleMotion": FloatResampleMotion}
NODE_DISPLAY_NAME_MAPPINGS = {"FloatEditMotion": "FLOAT Edit Motion", "FloatResampleMotion": "FLOAT Resample Motion"}
