"""The bundled public-domain portrait, speech clip and driving video, put in ComfyUI's input folder so that Load Image and
Load Audio (and Load Video) can offer them and the shipped workflows run without the user adding files."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import folder_paths

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# input-folder name -> bundled file (see assets/README.md for their provenance)
EXAMPLE_INPUTS = {
    "float_example_portrait.jpg": "grace_hopper.jpg",
    "float_example_speech.wav": "speech_librivox.wav",
    "float_example_driving.mp4": "driving_head_motion.mp4",
}


def install_example_inputs() -> None:
    """Copy each example into the input folder unless a file of that name is already there."""
    input_dir = Path(folder_paths.get_input_directory())
    for name, asset in EXAMPLE_INPUTS.items():
        target = input_dir / name
        if target.exists():
            continue
        try:
            input_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ASSETS / asset, target)
        except OSError as error:  # a read-only input folder must not stop the pack from loading
            log.warning("FLOAT: could not copy the example %s into %s: %s", asset, input_dir, error)
