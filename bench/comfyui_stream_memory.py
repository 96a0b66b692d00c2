"""Peak RAM of ComfyUI while FLOAT Decode to File streams a talking-head video, as the clip gets longer.

A real ComfyUI (the one the tests provision) runs the long-audio workflow's graph: face crop, audio features,
sampling, then Decode to File pasting every frame back into the 512 x 600 photo and encoding it with the
speech. For comparison the same clip also goes the IMAGE way (Decode -> Paste Back -> Create Video -> Save
Video), which holds every frame in RAM. The model is small (synthesised, 32 px faces) so that minutes of
video take minutes; the frames written are full-size pictures, which is what RAM depends on.

Peak RSS is the ComfyUI process's VmHWM, reset (/proc/PID/clear_refs) before each run; the first run is a
warm-up that loads the models. Linux only.

    .venv/bin/python bench/comfyui_stream_memory.py            # 30 s and 120 s
    .venv/bin/python bench/comfyui_stream_memory.py --seconds 30 120 300 --image-path-seconds 30

Prints a Markdown table for the README.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from comfy_harness import ComfyServer, provision_comfyui, ui_to_api  # noqa: E402
from conftest import make_small_config  # noqa: E402

from float_model.synthetic import write_official_layout  # noqa: E402


def speech_of(seconds: float, folder: Path) -> str:
    """The bundled sentence repeated to `seconds`, as a 16 kHz WAV in ComfyUI's input folder."""
    with wave.open(str(REPO / "assets" / "speech_librivox.wav")) as file:
        clip = np.frombuffer(file.readframes(file.getnframes()), dtype="<i2")
    samples = np.tile(clip, int(seconds * 16000) // len(clip) + 1)[: int(seconds * 16000)]
    name = f"speech_{seconds:g}s.wav"
    with wave.open(str(folder / name), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(16000)
        file.writeframes(samples.tobytes())
    return name


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc: Linux only")


def run(server: ComfyServer, prompt: dict) -> tuple[float, float]:
    """(peak RSS in MB, seconds) of one prompt."""
    Path(f"/proc/{server.pid}/clear_refs").write_text("5")
    start = time.monotonic()
    result = server.run(prompt, timeout=3600)
    if result.status != "success":
        raise RuntimeError(f"the run failed: {result.error}")
    return peak_rss_mb(server.pid), time.monotonic() - start


def streaming_prompt(server: ComfyServer, audio: str) -> dict:
    workflow = json.loads((REPO / "workflows" / "float_long_audio_to_file.json").read_text())
    prompt = ui_to_api(workflow, server.object_info())
    for node in prompt.values():
        if node["class_type"] == "LoadAudio":
            node["inputs"]["audio"] = audio
        if node["class_type"] == "FloatSpeechToEmotion":
            node["inputs"]["mode"] = "whole clip"
    return prompt


def image_prompt(server: ComfyServer, audio: str) -> dict:
    """The same clip the IMAGE way: every pasted frame in one batch before the video is written."""
    prompt = ui_to_api(json.loads((REPO / "workflows" / "float_paste_back.json").read_text()), server.object_info())
    for key, node in list(prompt.items()):
        if node["class_type"] == "LoadAudio":
            node["inputs"]["audio"] = audio
        if node["class_type"] == "ImageScaleBy":  # the upscaler's stand-in: left out, it would copy every frame
            scaled_from = node["inputs"]["image"]
            del prompt[key]
    for node in prompt.values():
        if node["class_type"] == "CreateVideo":
            node["inputs"]["images"] = scaled_from
    return prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30, 120])
    parser.add_argument("--image-path-seconds", type=float, nargs="*", default=[30])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as models, tempfile.TemporaryDirectory() as inputs:
        write_official_layout(Path(models) / "float", make_small_config(), seed=0)
        clips = {s: speech_of(s, Path(inputs)) for s in {3.0, *args.seconds, *args.image_path_seconds}}
        with ComfyServer(provision_comfyui(), REPO, models_dir=models, input_files=Path(inputs).iterdir()) as server:
            run(server, streaming_prompt(server, clips[3.0]))  # warm-up: loads the models
            rows = []
            for seconds in args.seconds:
                peak, took = run(server, streaming_prompt(server, clips[seconds]))
                rows.append(("Decode to File (streamed)", seconds, peak, took))
                print(rows[-1], flush=True)
            for seconds in args.image_path_seconds:
                peak, took = run(server, image_prompt(server, clips[seconds]))
                rows.append(("Decode -> Paste Back -> Save Video (IMAGE batch)", seconds, peak, took))
                print(rows[-1], flush=True)

    print("\n| path | audio | frames (512 x 600) | peak RSS of ComfyUI | time |")
    print("|---|---|---|---|---|")
    for path, seconds, peak, took in rows:
        print(f"| {path} | {seconds:g} s | {int(seconds * 25)} | {peak:,.0f} MB | {took:.0f} s |")


if __name__ == "__main__":
    main()
