"""Video-driven motion: a driving video's head movement for the portrait, alone or blended with the
speech's lip movement."""

from __future__ import annotations

from . import stages
from .types import FLOAT_APPEARANCE, FLOAT_MODEL, FLOAT_MOTION

BLEND_MODES = {
    "head from video, lips from audio": "split",
    "mix": "mix",
    "chosen directions from audio": "directions",
}


def parse_directions(text: str, count: int) -> list[int]:
    """'0-4, 7' -> [0, 1, 2, 3, 4, 7]."""
    directions = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, _, last = part.partition("-")
        try:
            span = range(int(first), int(last or first) + 1)
        except ValueError:
            span = None
        if span is None or not span or span[0] < 0 or span[-1] >= count:
            raise ValueError(f"motion directions: {part!r} is not a direction or range within 0-{count - 1} (e.g. '0-4, 7')")
        directions += span
    return directions


class FloatVideoMotion:
    DESCRIPTION = (
        "Motion from a driving video: the face in each frame is found and encoded, and its movement relative to "
        "the first frame is applied to the portrait. Connect Load Video -> Get Video Components (images, fps)."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "extract"
    RETURN_TYPES = (FLOAT_MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = ("The video's motion on the portrait, for Blend Motion or Decode.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (FLOAT_MODEL, {"tooltip": "From FLOAT Load Model."}),
                "appearance": (FLOAT_APPEARANCE, {"tooltip": "From FLOAT Encode Image: the portrait to drive (one)."}),
                "video": ("IMAGE", {"tooltip": "The driving video's frames, showing one face."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 240.0, "tooltip": "The driving video's frame rate (Get Video Components gives it)."}),
                "tracking_smoothing": (
                    "FLOAT",
                    {"default": 0.08, "min": 0.0, "max": 1.0, "step": 0.01, "tooltip": "Smooth the tracked face square over this many seconds, against jitter."},
                ),
            }
        }

    def extract(self, model, appearance, video, fps, tracking_smoothing):
        return (stages.driving_motion(model, appearance, video, fps, tracking_smoothing),)


class FloatBlendMotion:
    DESCRIPTION = (
        "Combines speech-driven and video-driven motion on the speech's frames (the video is resampled, and held "
        "on its last frame if shorter). 'head from video, lips from audio' keeps the video's slow movement and "
        "the speech's quick movement; 'mix' weighs the two; 'chosen directions' takes listed motion directions "
        "from the speech and the rest from the video."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "blend"
    RETURN_TYPES = (FLOAT_MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = ("The blended motion, for Decode.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (FLOAT_MODEL, {"tooltip": "From FLOAT Load Model: its motion basis."}),
                "audio_motion": (FLOAT_MOTION, {"tooltip": "From FLOAT Sample Motion."}),
                "video_motion": (FLOAT_MOTION, {"tooltip": "From FLOAT Video Motion."}),
                "mode": (list(BLEND_MODES), {"default": "head from video, lips from audio", "tooltip": "How to combine them (see the node's description)."}),
                "split_seconds": (
                    "FLOAT",
                    {"default": 0.2, "min": 0.02, "max": 2.0, "step": 0.01, "tooltip": "head/lips mode: movement slower than this comes from the video, quicker from the speech."},
                ),
                "audio_weight": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05, "tooltip": "mix mode: 1 all speech, 0 all video."}),
                "directions": ("STRING", {"default": "0-4", "tooltip": "chosen-directions mode: the motion directions (0-19) taken from the speech, e.g. '0-4, 7'."}),
            }
        }

    def blend(self, model, audio_motion, video_motion, mode, split_seconds, audio_weight, directions):
        chosen = parse_directions(directions, model.model.config.motion_autoencoder.motion_dim) if BLEND_MODES[mode] == "directions" else []
        return (stages.blend(model, audio_motion, video_motion, BLEND_MODES[mode], audio_weight, split_seconds, chosen),)


NODE_CLASS_MAPPINGS = {"FloatVideoMotion": FloatVideoMotion, "FloatBlendMotion": FloatBlendMotion}
NODE_DISPLAY_NAME_MAPPINGS = {"FloatVideoMotion": "FLOAT Video Motion", "FloatBlendMotion": "FLOAT Blend Motion"}
