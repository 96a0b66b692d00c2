"""Save and load motion: sampled motion kept as a small safetensors file, to re-render or re-edit later
without sampling again (or to drive another portrait)."""

from __future__ import annotations

from pathlib import Path

import folder_paths

from ..float_model.motion import load_motion, save_motion
from .types import FLOAT_MODEL, FLOAT_MOTION, Motion

SUBFOLDER = "float_motion"


def motion_files() -> list[str]:
    """Motion files in the input folder, and those saved by Save Motion (annotated [output])."""
    names = [p.name for p in Path(folder_paths.get_input_directory()).glob("*.safetensors")]
    saved = Path(folder_paths.get_output_directory()) / SUBFOLDER
    names += [f"{SUBFOLDER}/{p.name} [output]" for p in sorted(saved.glob("*.safetensors"))]
    return sorted(names) or ["(no motion files yet: run FLOAT Save Motion)"]


class FloatSaveMotion:
    DESCRIPTION = "Saves motion as a safetensors file in the output folder's float_motion/ (a few kB per second), with its frame rate."
    CATEGORY = "FLOAT"
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("The file written.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "motion": (FLOAT_MOTION, {"tooltip": "Any FLOAT motion."}),
                "filename_prefix": ("STRING", {"default": "motion", "tooltip": "The start of the file name."}),
            }
        }

    def save(self, motion, filename_prefix):
        folder, name, counter, _, _ = folder_paths.get_save_image_path(f"{SUBFOLDER}/{filename_prefix}", folder_paths.get_output_directory())
        path = Path(folder) / f"{name}_{counter:05}_.safetensors"
        save_motion(path, motion.latents, motion.fps)
        return {"ui": {"text": [f"{path.name}: {motion.latents.shape[1]} frames at {motion.fps:g} fps"]}, "result": (str(path),)}


class FloatLoadMotion:
    DESCRIPTION = "Loads motion saved by FLOAT Save Motion (from the output folder, or put in the input folder)."
    CATEGORY = "FLOAT"
    FUNCTION = "load"
    RETURN_TYPES = (FLOAT_MOTION,)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = ("The motion, for Edit, Blend or Decode.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (FLOAT_MODEL, {"tooltip": "From FLOAT Load Model: motion must match its size."}),
                "motion_file": (motion_files(), {"tooltip": "A .safetensors motion file."}),
            }
        }

    def load(self, model, motion_file):
        path = folder_paths.get_annotated_filepath(motion_file)
        latents, fps = load_motion(path, model.model.config.motion_autoencoder.latent_dim)
        return (Motion(latents, fps, latents.shape[1] / fps),)


NODE_CLASS_MAPPINGS = {"FloatSaveMotion": FloatSaveMotion, "FloatLoadMotion": FloatLoadMotion}
NODE_DISPLAY_NAME_MAPPINGS = {"FloatSaveMotion": "FLOAT Save Motion", "FloatLoadMotion": "FLOAT Load Motion"}
