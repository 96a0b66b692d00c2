"""Decode: motion latents + appearance -> video frames, as a ComfyUI IMAGE batch or streamed into mp4 files."""

from __future__ import annotations

from pathlib import Path

import folder_paths

from . import stages
from .paste import FEATHER_INPUT
from .types import FLOAT_APPEARANCE, FLOAT_CROP, FLOAT_MODEL, FLOAT_MOTION

try:  # ComfyUI's VIDEO type (0.3.3x and later); older versions get the file path only
    from comfy_api.input_impl import VideoFromFile
except ImportError:
    VideoFromFile = None

BATCH_SIZE_INPUT = (
    "INT",
    {
        "default": 1,
        "min": 1,
        "max": 256,
        "tooltip": "Frames rendered per decoder call. 1 reproduces the official frames bit for bit; 8 to 32 is faster on GPUs (frames differ only by rounding). Cancel stops after the current batch.",
    },
)

# What both decode nodes render from.
RENDER_INPUTS = {
    "model": (FLOAT_MODEL, {"tooltip": "From FLOAT Load Model."}),
    "appearance": (FLOAT_APPEARANCE, {"tooltip": "From FLOAT Encode Image: the face to render."}),
    "motion": (FLOAT_MOTION, {"tooltip": "From FLOAT Sample Motion (or an edited, blended or loaded motion)."}),
}

EVERY_NTH_INPUT = (
    "INT",
    {"default": 1, "min": 1, "max": 25, "tooltip": "Preview: render only every n-th frame (at 1/n of the frame rate). 1: every frame."},
)


class FloatDecode:
    DESCRIPTION = (
        "Renders the frames: the motion auto-encoder's decoder warps and paints the portrait for each motion "
        "latent. Out: 512 x 512 frames (all frames of clip 1, then clip 2 ...), for Create Video, Video Combine "
        "or any IMAGE node."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "decode"
    RETURN_TYPES = ("IMAGE", "FLOAT")
    RETURN_NAMES = ("frames", "fps")
    OUTPUT_TOOLTIPS = ("The video frames.", "Their frame rate (lower in preview mode).")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **RENDER_INPUTS,
                "batch_size": BATCH_SIZE_INPUT,
                "every_nth_frame": EVERY_NTH_INPUT,
            }
        }

    def decode(self, model, appearance, motion, batch_size, every_nth_frame):
        return stages.decode(model, appearance, motion, batch_size, every_nth_frame)


class FloatDecodeToFile:
    DESCRIPTION = (
        "Renders the frames straight into an mp4 (H.264, with the audio as AAC) in ComfyUI's output folder, batch "
        "by batch: RAM and VRAM stay flat for any length, so an hour of speech works. With crop and original "
        "connected, each frame is pasted back into the picture first. Cancel leaves no file behind."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "write"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING", "VIDEO") if VideoFromFile is not None else ("STRING",)
    RETURN_NAMES = ("path", "video") if VideoFromFile is not None else ("path",)
    OUTPUT_TOOLTIPS = ("The file written (the first one, for several portraits).", "The same video, for core video nodes.")[: len(RETURN_TYPES)]

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                **RENDER_INPUTS,
                "filename_prefix": ("STRING", {"default": "video/FLOAT", "tooltip": "Where in the output folder, and the start of the file name."}),
                "batch_size": BATCH_SIZE_INPUT,
                "crf": ("INT", {"default": 18, "min": 0, "max": 51, "tooltip": "H.264 quality: 0 is lossless, 18 visually near-lossless, 28 small files."}),
            },
            "optional": {
                "audio": ("AUDIO", {"tooltip": "The speech to put under the video (from Audio Features' audio output)."}),
                "crop": (FLOAT_CROP, {"tooltip": "From FLOAT Face Crop: paste each frame back where the face was."}),
                "original": ("IMAGE", {"tooltip": "The picture (or video frames) the face was cropped from; needed with crop."}),
                "feather": FEATHER_INPUT,
            },
        }

    def write(self, model, appearance, motion, filename_prefix, batch_size, crf, audio=None, crop=None, original=None, feather=0.1):
        if (crop is None) != (original is None):
            raise ValueError("to paste back while writing, connect both crop (from FLOAT Face Crop) and original (the picture it was cut from)")
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, folder_paths.get_output_directory())
        count = max(appearance.batch, motion.batch)
        paths = [Path(folder) / f"{name}_{counter + i:05}_.mp4" for i in range(count)]
        paste = (crop, original) if crop is not None else None
        written = stages.decode_to_files(model, appearance, motion, audio, paths, batch_size, crf, paste, feather)
        shown = [{"filename": path.name, "subfolder": subfolder, "type": "output"} for path in written]
        result = (str(written[0]), VideoFromFile(str(written[0]))) if VideoFromFile is not None else (str(written[0]),)
        return {"ui": {"images": shown, "animated": (True,)}, "result": result}


NODE_CLASS_MAPPINGS = {"FloatDecode": FloatDecode, "FloatDecodeToFile": FloatDecodeToFile}
NODE_DISPLAY_NAME_MAPPINGS = {"FloatDecode": "FLOAT Decode", "FloatDecodeToFile": "FLOAT Decode to File"}
