"""ComfyUI's entry point of the FLOAT node pack: the nodes live in nodes/, the model in float_model/
(which never imports ComfyUI), the example workflows in workflows/."""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./nodes/web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
