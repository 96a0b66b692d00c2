"""Take the picture of each workflow (<name>.jpg beside <name>.json) in ComfyUI's own front end: the template
browser shows it as the thumbnail, and the README shows it. Run after editing a workflow:

    pip install playwright   # and a Chromium: apt install chromium, or `playwright install chromium`
    .venv/bin/python workflows/capture_previews.py

It starts the ComfyUI the tests use (tests/comfy_harness) with small synthesised model files, runs each
workflow once, so that the pictures show the nodes' results, and photographs the graph.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

from comfy_harness import ComfyServer, provision_comfyui  # noqa: E402
from comfy_harness.frontend import FrontEnd, frontend_unavailable  # noqa: E402
from conftest import make_small_config  # noqa: E402

from float_model.synthetic import write_official_layout  # noqa: E402


def main() -> None:
    if reason := frontend_unavailable():
        sys.exit(reason)
    with tempfile.TemporaryDirectory() as models:
        write_official_layout(Path(models) / "float", make_small_config(), seed=0)
        with ComfyServer(provision_comfyui(), REPO, "comfyui-float", models_dir=models) as server, FrontEnd(server) as front_end:
            for workflow in sorted(HERE.glob("*.json")):
                front_end.load(server.template("comfyui-float", workflow.stem))
                front_end.queue()
                front_end.screenshot(workflow.with_suffix(".jpg"))
                print(f"took {workflow.with_suffix('.jpg').name}")


if __name__ == "__main__":
    main()
