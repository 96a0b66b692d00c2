"""The shipped workflows in ComfyUI's own browser front end (headless Chromium): they load, the front end
queues the same prompt the harness converter makes, they run, and the emotion read-out appears on its node.

Skipped where Playwright or Chromium is missing (CI has neither); run locally before a release.
"""

from __future__ import annotations


import pytest

from comfy_harness import ComfyServer, provision_comfyui, ui_to_api
from comfy_harness.frontend import FrontEnd, frontend_unavailable
from conftest import make_small_config
from float_model.synthetic import write_official_layout
from test_comfyui_nodes import PACK, REPO, WORKFLOWS

pytestmark = [pytest.mark.comfyui, pytest.mark.skipif(frontend_unavailable() is not None, reason=str(frontend_unavailable()))]

# Values of UI-only widgets that the front end puts into the prompt and ComfyUI ignores.
UI_ONLY_INPUTS = {"LoadAudio": {"audioUI"}, "LoadVideo": {"video-preview"}}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    write_official_layout(models / "float", make_small_config(), seed=0)
    with ComfyServer(provision_comfyui(), REPO, PACK, models_dir=models) as server, FrontEnd(server) as front_end:
        yield server, front_end


def without_ui_only(prompt: dict) -> dict:
    for node in prompt.values():
        for name in UI_ONLY_INPUTS.get(node["class_type"], ()):
            node["inputs"].pop(name, None)
    return prompt


@pytest.mark.parametrize("name", WORKFLOWS)
def test_template_loads_queues_and_runs_in_the_browser(browser, name):
    server, front_end = browser
    workflow = server.template(PACK, name)
    front_end.load(workflow)
    queued = without_ui_only(front_end.prompt())
    assert queued == ui_to_api(workflow, server.object_info())
    videos_before = set(server.output_dir.rglob("*.mp4"))
    front_end.queue()
    assert len(set(server.output_dir.rglob("*.mp4")) - videos_before) == 1
    assert not [error for error in front_end.errors if "float_nodes" in error]


def test_predicted_emotion_is_shown_on_the_node(browser):
    server, front_end = browser
    front_end.load(server.template(PACK, "float_step_by_step"))
    front_end.queue()
    shown = front_end.widget_text("FloatSpeechToEmotion", "predicted")
    assert shown and all(label in shown for label in ("angry", "happy", "neutral", "surprise")) and "%" in shown
