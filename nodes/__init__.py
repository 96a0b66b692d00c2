"""The FLOAT nodes for ComfyUI: thin node classes over the stage functions in stages.py.

Each node module is imported on its own: one that cannot be imported (a missing dependency) is reported
and left out, and the rest of the pack still loads.
"""

from __future__ import annotations

import importlib
import logging

from . import runtime
from .examples import install_example_inputs

log = logging.getLogger(__name__)

NODE_MODULES = ("loaders", "face", "encode", "speech", "sample", "edit", "driving", "motion_files", "decode", "paste", "animate")

runtime.register_model_folder()
install_example_inputs()

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
for _name in NODE_MODULES:
    try:
        _module = importlib.import_module(f".{_name}", __name__)
    except ImportError as error:
        log.warning("FLOAT: the nodes of %s.py are disabled: %s. Install the pack's requirements: pip install -r requirements.txt", _name, error)
        continue
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)
