"""Sample Motion: the flow-matching transformer turns audio features, emotion and the reference motion
into a motion latent for every frame."""

from __future__ import annotations

from ..float_model.sampling import SOLVERS
from . import stages
from .types import FLOAT_APPEARANCE, FLOAT_AUDIO_FEATURES, FLOAT_EMOTION, FLOAT_MODEL, FLOAT_MOTION

SAMPLING_INPUTS = {
    "nfe": (
        "INT",
        {"default": 10, "min": 1, "max": 100, "tooltip": "ODE steps per 2-second chunk (the official 10). More: smoother, slower."},
    ),
    "solver": (
        list(SOLVERS),
        {"default": "euler", "tooltip": "ODE solver. euler is the official one; midpoint and rk4 evaluate the transformer 2 and 4 times per step."},
    ),
    "audio_guidance": (
        "FLOAT",
        {"default": 2.0, "min": 0.0, "max": 10.0, "step": 0.1, "tooltip": "How strongly lips and head follow the speech (official 2). 1: no guidance beyond the plain condition."},
    ),
    "emotion_guidance": (
        "FLOAT",
        {"default": 1.0, "min": 0.0, "max": 15.0, "step": 0.1, "tooltip": "How strongly the emotion shows (official 1). 5 to 10 make a chosen emotion clear."},
    ),
    "seed": (
        "INT",
        {"default": 15, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True, "tooltip": "The noise the motion starts from: the same seed gives the same motion."},
    ),
    "official": (
        "BOOLEAN",
        {"default": False, "tooltip": "Reproduce the official sampler exactly, including its same noise for every chunk and its time grid."},
    ),
}


class FloatSampleMotion:
    DESCRIPTION = (
        "Samples head and lip motion from speech by flow matching: 2-second chunks of 50 frames, each continuing "
        "the last 10 frames of the one before, with audio and emotion guidance. Cancel stops it within one step."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "sample"
    RETURN_TYPES = (FLOAT_MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = ("Motion latents for every frame at the chosen fps, for Decode.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (FLOAT_MODEL, {"tooltip": "From FLOAT Load Model."}),
                "appearance": (FLOAT_APPEARANCE, {"tooltip": "From FLOAT Encode Image: the reference motion of the portrait."}),
                "audio_features": (FLOAT_AUDIO_FEATURES, {"tooltip": "From FLOAT Audio Features."}),
                "emotion": (FLOAT_EMOTION, {"tooltip": "From FLOAT Speech to Emotion or FLOAT Emotion."}),
                **SAMPLING_INPUTS,
            }
        }

    def sample(self, model, appearance, audio_features, emotion, nfe, solver, audio_guidance, emotion_guidance, seed, official):
        motion = stages.sample(model, appearance, audio_features, emotion, nfe, solver, audio_guidance, emotion_guidance, seed, official)
        return (motion,)


NODE_CLASS_MAPPINGS = {"FloatSampleMotion": FloatSampleMotion}
NODE_DISPLAY_NAME_MAPPINGS = {"FloatSampleMotion": "FLOAT Sample Motion"}
