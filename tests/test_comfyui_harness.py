"""Self-test of tests/comfy_harness: the UI->API converter (pure), then a real headless ComfyUI.

The ComfyUI part loads a throw-away V1 node pack written into a temp dir (not the FLOAT
pack), so it checks the harness, not the product. Deselect it with -m "not comfyui".
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import socket
import struct
import threading
import wave
from pathlib import Path

import av
import pytest
from comfy_harness import (
    PromptRejected,
    WorkflowConversionError,
    comfy_install_fixture,
    comfy_server_fixture,
    ui_to_api,
    widget_slots,
)
from comfy_harness.ws import EventStream
from PIL import Image

# ----------------------------------------------------------------------------- converter (no ComfyUI)


def node_def(required: dict, optional: dict | None = None, order: bool = True, display: str = "") -> dict:
    """An /object_info entry; `order=False` mimics a server without input_order."""
    entry = {"input": {"required": required, "optional": optional or {}}, "display_name": display}
    if order:
        entry["input_order"] = {"required": list(required), "optional": list(optional or {})}
    return entry


OBJECT_INFO = {
    "LoadImage": node_def({"image": [["face.png"], {"image_upload": True}]}, display="Load Image"),
    "LoadAudio": node_def({"audio": [["voice.wav"], {"audio_upload": True}]}),
    "Sampler": node_def(
        {"model": ["MODEL"], "seed": ["INT", {"control_after_generate": True}], "steps": ["INT", {}],
         "sampler": [["euler", "heun"]]},
        {"denoise": ["FLOAT", {}]}),
    "Seeds": node_def({"noise_seed": ["INT", {}], "seed": ["INT", {"control_after_generate": False}],
                       "count": ["INT", {"forceInput": True}], "tag": ["STRING", {}]}),
    "ComboControl": node_def({"choice": ["COMBO", {"options": ["a", "b"], "control_after_generate": True}],
                              "after": ["STRING", {}]}),
    "RemoteLoad": node_def({"image": ["COMBO", {"image_upload": True, "remote": {"refresh_button": True}}],
                            "after": ["INT", {}]}),
    "UploadOldServer": node_def({"image": [["x.png"], {"image_upload": True}]}, {"scale": ["FLOAT", {}]}, order=False),
    "Scale": node_def({"image": ["IMAGE"], "factor": ["FLOAT", {}]}),
    "Blend": node_def({"image": ["IMAGE"], "mask": ["MASK"], "other": ["IMAGE"]}),
    "Save": node_def({"images": ["IMAGE"], "prefix": ["STRING", {}]}),
    "Points": node_def({"points": ["STRING", {}]}),
}


def wf_node(node_id: int, type_: str, values=None, inputs=(), outputs=(), mode: int = 0, **extra) -> dict:
    """A UI-format node; `inputs`/`outputs` are (name, type, link id(s)) tuples."""
    node = {"id": node_id, "type": type_, "mode": mode, "pos": [0, 0], "size": [200, 100], "flags": {}, "order": 0,
            "inputs": [{"name": n, "type": t, "link": link} for n, t, link in inputs],
            "outputs": [{"name": n, "type": t, "links": links} for n, t, links in outputs],
            "properties": {}, **extra}
    if values is not None:
        node["widgets_values"] = values
    return node


def workflow(nodes: list[dict], links: list[list]) -> dict:
    return {"last_node_id": max(n["id"] for n in nodes), "last_link_id": len(links), "nodes": nodes,
            "links": links, "groups": [], "config": {}, "extra": {}, "version": 0.4}


def inputs_of(prompt: dict, node_id: int) -> dict:
    return prompt[str(node_id)]["inputs"]


def test_upload_buttons_and_audio_player_values_are_not_inputs():
    """As saved by the frontend: LoadImage ["file", "image"], LoadAudio ["file", null, null]."""
    prompt = ui_to_api(workflow([wf_node(1, "LoadImage", ["face.png", "image"]),
                                 wf_node(2, "LoadAudio", ["voice.wav", None, None])], []), OBJECT_INFO)
    assert inputs_of(prompt, 1) == {"image": "face.png"}
    assert inputs_of(prompt, 2) == {"audio": "voice.wav"}
    assert prompt["1"]["_meta"] == {"title": "Load Image"}


def test_control_after_generate_value_is_skipped():
    wf = workflow([wf_node(1, "LoadImage", ["face.png", "image"], outputs=[("IMAGE", "IMAGE", [1])]),
                   wf_node(2, "Sampler", [42, "randomize", 20, "heun", 0.5], inputs=[("model", "MODEL", None)])], [])
    assert inputs_of(ui_to_api(wf, OBJECT_INFO), 2) == {"seed": 42, "steps": 20, "sampler": "heun", "denoise": 0.5}


def test_seed_names_get_a_control_value_unless_disabled_and_force_input_has_no_widget():
    prompt = ui_to_api(workflow([wf_node(1, "Seeds", [7, "fixed", 8, "tag"])], []), OBJECT_INFO)
    assert inputs_of(prompt, 1) == {"noise_seed": 7, "seed": 8, "tag": "tag"}


def test_combo_control_adds_control_and_filter_values_and_remote_adds_toggle_and_refresh():
    prompt = ui_to_api(workflow([wf_node(1, "ComboControl", ["b", "fixed", "", "text"]),
                                 wf_node(2, "RemoteLoad", ["x.png", False, "refresh", 3, "image"])], []), OBJECT_INFO)
    assert inputs_of(prompt, 1) == {"choice": "b", "after": "text"}
    assert inputs_of(prompt, 2) == {"image": "x.png", "after": 3}
    assert widget_slots("RemoteLoad", OBJECT_INFO["RemoteLoad"]) == ["image", None, None, "after", None]


def test_upload_value_sits_before_optional_widgets_without_input_order():
    prompt = ui_to_api(workflow([wf_node(1, "UploadOldServer", ["x.png", "image", 2.0])], []), OBJECT_INFO)
    assert inputs_of(prompt, 1) == {"image": "x.png", "scale": 2.0}


def test_linked_widget_takes_the_link_but_its_value_is_still_consumed():
    wf = workflow([wf_node(1, "Seeds", [1, "fixed", 2, "t"], outputs=[("INT", "INT", [1])]),
                   wf_node(2, "Sampler", [99, "fixed", 20, "euler", 1.0],
                           inputs=[("model", "MODEL", None), ("seed", "INT", 1)]),
                   ], [[1, 1, 0, 2, 1, "INT"]])
    wf["nodes"][1]["inputs"][1]["widget"] = {"name": "seed"}
    assert inputs_of(ui_to_api(wf, OBJECT_INFO), 2) == {"seed": ["1", 0], "steps": 20, "sampler": "euler",
                                                        "denoise": 1.0}


def test_primitive_node_value_replaces_the_link_and_dict_widgets_values_map_by_name():
    wf = workflow([wf_node(1, "PrimitiveNode", [1234, "fixed"], outputs=[("INT", "INT", [1])]),
                   wf_node(2, "Sampler", {"seed": 5, "steps": 3, "sampler": "euler", "denoise": 1.0, "ui": 1},
                           inputs=[("seed", "INT", 1)])], [[1, 1, 0, 2, 0, "INT"]])
    assert inputs_of(ui_to_api(wf, OBJECT_INFO), 2) == {"seed": 1234, "steps": 3, "sampler": "euler", "denoise": 1.0}


def test_list_values_are_wrapped():
    prompt = ui_to_api(workflow([wf_node(1, "Points", [[1, 2]])], []), OBJECT_INFO)
    assert inputs_of(prompt, 1) == {"points": {"__value__": [1, 2]}}


def image_chain(mode: int) -> dict:
    """LoadImage -> Scale (given mode) -> Reroute -> Save, plus a Note."""
    return workflow([
        wf_node(1, "LoadImage", ["face.png", "image"], outputs=[("IMAGE", "IMAGE", [1]), ("MASK", "MASK", [])]),
        wf_node(2, "Scale", [2.0], inputs=[("image", "IMAGE", 1)], outputs=[("IMAGE", "IMAGE", [2])], mode=mode),
        wf_node(3, "Reroute", None, inputs=[("", "*", 2)], outputs=[("", "IMAGE", [3])]),
        wf_node(4, "Save", ["out"], inputs=[("images", "IMAGE", 3)], title="Keep"),
        wf_node(5, "Note", ["a note"]),
    ], [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "*"], [3, 3, 0, 4, 0, "IMAGE"]])


def test_reroute_is_followed_and_note_dropped():
    prompt = ui_to_api(image_chain(mode=0), OBJECT_INFO)
    assert sorted(prompt) == ["1", "2", "4"]
    assert inputs_of(prompt, 4) == {"images": ["2", 0], "prefix": "out"}
    assert prompt["4"]["_meta"]["title"] == "Keep"


def test_bypassed_node_passes_its_matching_input_through():
    prompt = ui_to_api(image_chain(mode=4), OBJECT_INFO)
    assert sorted(prompt) == ["1", "4"]
    assert inputs_of(prompt, 4)["images"] == ["1", 0]


def test_bypass_picks_the_input_of_the_wanted_type():
    wf = workflow([
        wf_node(1, "LoadImage", ["face.png", "image"], outputs=[("IMAGE", "IMAGE", [1, 3]), ("MASK", "MASK", [2])]),
        wf_node(2, "Blend", None, mode=4, inputs=[("mask", "MASK", 2), ("image", "IMAGE", 1)],
                outputs=[("IMAGE", "IMAGE", [4])]),
        wf_node(3, "Save", ["out"], inputs=[("images", "IMAGE", 4)]),
    ], [[1, 1, 0, 2, 1, "IMAGE"], [2, 1, 1, 2, 0, "MASK"], [4, 2, 0, 3, 0, "IMAGE"]])
    assert inputs_of(ui_to_api(wf, OBJECT_INFO), 3)["images"] == ["1", 0]


def test_muted_node_is_dropped_with_the_links_from_it():
    prompt = ui_to_api(image_chain(mode=2), OBJECT_INFO)
    assert sorted(prompt) == ["1", "4"]
    assert inputs_of(prompt, 4) == {"prefix": "out"}


def test_unknown_node_types_are_named():
    with pytest.raises(WorkflowConversionError, match="FancyNode, OtherNode"):
        ui_to_api(workflow([wf_node(1, "OtherNode", []), wf_node(2, "FancyNode", []),
                            wf_node(3, "GhostNode", [], mode=2)], []), OBJECT_INFO)


def test_subgraphs_are_refused_clearly():
    wf = workflow([wf_node(1, "2c61a7f0-0000-4000-8000-000000000000", [])], [])
    wf["definitions"] = {"subgraphs": [{"id": "2c61a7f0-0000-4000-8000-000000000000", "nodes": []}]}
    with pytest.raises(WorkflowConversionError, match="subgraphs"):
        ui_to_api(wf, OBJECT_INFO)


# ----------------------------------------------------------------------------- websocket client (fake server)


def serve_frames(frames: list[bytes], received: list[bytes]) -> tuple[int, threading.Thread]:
    """A one-shot fake WebSocket server: accepts the upgrade, sends `frames`, records what comes back."""
    listener = socket.create_server(("127.0.0.1", 0))

    def handle():
        conn, _ = listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            key = re.search(rb"Sec-WebSocket-Key: (\S+)", request).group(1) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
            accept = base64.b64encode(hashlib.sha1(key).digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + b"".join(frames))
            while chunk := conn.recv(4096):
                received.append(chunk)
        listener.close()

    server = threading.Thread(target=handle, daemon=True)
    server.start()
    return listener.getsockname()[1], server


def test_websocket_client_joins_fragments_skips_binary_answers_ping_and_close():
    text = json.dumps({"type": "progress", "data": {"value": 2}}).encode()
    long_text = b"[" + b" " * 198 + b"]"  # 200 bytes: 16-bit extended length
    frames = [bytes([0x01, 5]) + text[:5], bytes([0x89, 2]) + b"hi", bytes([0x80, len(text) - 5]) + text[5:],
              bytes([0x82, 3]) + b"\x00\x01\x02", bytes([0x81, 126]) + struct.pack("!H", 200) + long_text,
              bytes([0x88, 2]) + struct.pack("!H", 1000)]
    received: list[bytes] = []
    port, server = serve_frames(frames, received)
    stream = EventStream("127.0.0.1", port, "client")
    assert stream.wait_for(lambda m: isinstance(m, list), timeout=5) == []
    assert stream.messages() == [{"type": "progress", "data": {"value": 2}}, []]
    stream.close()
    server.join(timeout=5)
    replies = b"".join(received)
    assert replies[0] == 0x8A and replies[1] == 0x80 | 2  # masked pong carrying the ping's payload
    mask = replies[2:6]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(replies[6:8])) == b"hi"
    assert replies[8] == 0x88  # our close answer


# ----------------------------------------------------------------------------- a real ComfyUI

PACK_NAME = "harness-pack"
STEPS = 4

PACK_SOURCE = '''
"""Throw-away V1 node pack for the comfy_harness self-test."""
import time

import comfy.model_management
import comfy.utils
import torch


class HarnessAnimate:
    CATEGORY = "harness"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    FUNCTION = "animate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",), "audio": ("AUDIO",),
                             "seed": ("INT", {"default": 0, "min": 0, "max": 2**32 - 1}),
                             "steps": ("INT", {"default": 4, "min": 1, "max": 200}),
                             "delay": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01}),
                             "mode": (["normal", "raise"],)}}

    def animate(self, image, audio, seed, steps, delay, mode):
        if mode == "raise":
            raise ValueError("harness node was asked to fail")
        loudness = float(audio["waveform"].abs().mean())
        bar = comfy.utils.ProgressBar(steps)
        frames = []
        for step in range(steps):
            comfy.model_management.throw_exception_if_processing_interrupted()
            frames.append((image[0] * (0.5 + 0.5 * step / steps) + 0.1 * loudness).clamp(0, 1))
            time.sleep(delay)
            bar.update(1)
        return (torch.stack(frames),)


NODE_CLASS_MAPPINGS = {"HarnessAnimate": HarnessAnimate}
'''


def demo_workflow() -> dict:
    """UI format, widgets_values exactly as the frontend saves them (upload/player/seed-control extras)."""
    return workflow([
        wf_node(1, "LoadImage", ["portrait.png", "image"], outputs=[("IMAGE", "IMAGE", [1]), ("MASK", "MASK", [])]),
        wf_node(2, "LoadAudio", ["voice.wav", None, None], outputs=[("AUDIO", "AUDIO", [2, 4])]),
        wf_node(3, "HarnessAnimate", [7, "randomize", STEPS, 0.0, "normal"],
                inputs=[("image", "IMAGE", 1), ("audio", "AUDIO", 2)], outputs=[("frames", "IMAGE", [3])]),
        wf_node(4, "CreateVideo", [8], inputs=[("images", "IMAGE", 3), ("audio", "AUDIO", 4)],
                outputs=[("VIDEO", "VIDEO", [5])]),
        wf_node(5, "SaveVideo", ["video/harness", "mp4", "h264"], inputs=[("video", "VIDEO", 5)]),
        wf_node(6, "MarkdownNote", ["Throw-away demo for the harness self-test."]),
    ], [[1, 1, 0, 3, 0, "IMAGE"], [2, 2, 0, 3, 1, "AUDIO"], [3, 3, 0, 4, 0, "IMAGE"], [4, 2, 0, 4, 1, "AUDIO"],
        [5, 4, 0, 5, 0, "VIDEO"]])


def write_wav(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        samples = (int(8000 * math.sin(2 * math.pi * 220 * i / rate)) for i in range(int(seconds * rate)))
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("media")
    Image.new("RGB", (64, 64), (200, 120, 80)).save(folder / "portrait.png")
    return [folder / "portrait.png", write_wav(folder / "voice.wav")]


@pytest.fixture(scope="module")
def harness_pack(tmp_path_factory) -> Path:
    pack = tmp_path_factory.mktemp("pack")
    (pack / "__init__.py").write_text(PACK_SOURCE)
    (pack / "example_workflows").mkdir()
    (pack / "example_workflows" / "harness_demo.json").write_text(json.dumps(demo_workflow()))
    Image.new("RGB", (32, 32)).save(pack / "example_workflows" / "harness_demo.jpg")
    return pack


comfy_install = comfy_install_fixture()
comfy_server = comfy_server_fixture(lambda request: request.getfixturevalue("harness_pack"), pack_name=PACK_NAME,
                                    input_files=lambda request: request.getfixturevalue("media"))


@pytest.fixture
def demo_prompt(comfy_server) -> dict:
    """The pack's template, fetched from the server and converted against its live /object_info."""
    return ui_to_api(comfy_server.template(PACK_NAME, "harness_demo"), comfy_server.object_info())


@pytest.mark.comfyui
class TestRealComfyUI:
    def test_provisioned_tree(self, comfy_install):
        assert re.fullmatch(r"\d+\.\d+\.\d+", comfy_install.version)
        assert (comfy_install.comfy_dir / "main.py").is_file() and comfy_install.python.exists()

    def test_pack_and_core_nodes_import(self, comfy_server):
        assert comfy_server.import_failures() == []
        assert list(comfy_server.pack_nodes()) == ["HarnessAnimate"]
        assert {"LoadAudio", "CreateVideo", "SaveVideo"} <= set(comfy_server.object_info())

    def test_example_workflow_is_served_as_template(self, comfy_server, harness_pack):
        assert comfy_server.templates()[PACK_NAME] == ["harness_demo"]
        assert comfy_server.template(PACK_NAME, "harness_demo") == demo_workflow()
        assert comfy_server.template_thumbnail(PACK_NAME, "harness_demo")[:3] == b"\xff\xd8\xff"

    def test_ui_workflow_converts_and_renders_a_video_with_sound(self, comfy_server, demo_prompt):
        assert demo_prompt["3"]["inputs"] == {"image": ["1", 0], "audio": ["2", 0], "seed": 7, "steps": STEPS,
                                              "delay": 0.0, "mode": "normal"}
        result = comfy_server.run(demo_prompt, workflow=demo_workflow())
        assert result.status == "success", result.error
        videos = [f for f in result.files if f.suffix == ".mp4"]
        assert len(videos) == 1 and videos[0].parent == comfy_server.output_dir / "video"
        with av.open(str(videos[0])) as container:
            assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
            assert sum(1 for _ in container.decode(video=0)) == STEPS
        progress = [m["data"] for m in comfy_server.messages(result.prompt_id) if m["type"] == "progress"]
        assert [(p["value"], p["max"]) for p in progress if p["node"] == "3"][-1] == (STEPS, STEPS)

    def test_bad_widget_value_is_rejected(self, comfy_server, demo_prompt):
        demo_prompt["3"]["inputs"]["steps"] = 0
        with pytest.raises(PromptRejected) as rejected:
            comfy_server.queue(demo_prompt)
        errors = rejected.value.node_errors["3"]["errors"]
        assert [(e["type"], e["extra_info"]["input_name"]) for e in errors] == [("value_smaller_than_min", "steps")]

    def test_runtime_exception_comes_back_as_error(self, comfy_server, demo_prompt):
        demo_prompt["3"]["inputs"]["mode"] = "raise"
        result = comfy_server.run(demo_prompt)
        assert result.status == "error" and not result.files
        assert (result.error.node_id, result.error.node_type) == ("3", "HarnessAnimate")
        assert result.error.exception_type.endswith("ValueError")
        assert result.error.exception_message == "harness node was asked to fail"
        assert any("animate" in frame for frame in result.error.traceback)

    def test_interrupt_stops_the_loop(self, comfy_server, demo_prompt):
        demo_prompt["3"]["inputs"].update(steps=100, delay=0.05, seed=12345)
        prompt_id = comfy_server.queue(demo_prompt)
        comfy_server.wait_for(lambda m: m["type"] == "progress" and m["data"]["prompt_id"] == prompt_id
                              and m["data"]["node"] == "3" and m["data"]["value"] >= 2, timeout=30)
        comfy_server.interrupt(prompt_id)
        result = comfy_server.result(prompt_id, timeout=30)
        assert result.status == "error" and result.interrupted and result.error is None
        assert result.files == []
        steps_done = max(m["data"]["value"] for m in comfy_server.messages(prompt_id) if m["type"] == "progress")
        assert steps_done < 100
