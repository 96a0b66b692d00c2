"""The control, compositing and long-form nodes in a real ComfyUI: paste-back, motion editing and resampling,
emotion keyframes, motion files, several portraits in one run, preview mode, and Cancel while writing a file.

Prompts are built from the shipped step-by-step workflow, with the nodes under test put in.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from test_comfyui_nodes import (  # noqa: F401  (fixtures)
    SPEECH_FRAMES,
    comfy,
    media,
    models,
    node_id,
    progress_of,
    set_inputs,
    template_prompt,
    video_streams,
    videos,
)

pytestmark = pytest.mark.comfyui


def steps(comfy, preview_seconds: float = 0.0) -> dict:
    """The step-by-step workflow up to Sample Motion, with a chosen emotion and no video output."""
    prompt = template_prompt(comfy, "float_step_by_step")
    for class_type in ("FloatSpeechToEmotion", "CreateVideo", "SaveVideo", "PreviewImage"):
        del prompt[node_id(prompt, class_type)]
    return set_inputs(prompt, "FloatAudioFeatures", preview_seconds=preview_seconds)


def add(prompt: dict, key: str, class_type: str, **inputs) -> list:
    prompt[key] = {"class_type": class_type, "inputs": inputs}
    return [key, 0]


def saved_frames(result, prefix: str) -> np.ndarray:
    assert result.status == "success", result.error
    pngs = sorted(path for path in result.files if path.name.startswith(prefix) and path.suffix == ".png")
    return np.stack([np.asarray(Image.open(path)) for path in pngs])


def test_paste_back_changes_nothing_outside_the_feathered_square(comfy):
    prompt = steps(comfy, preview_seconds=0.2)
    decode = node_id(prompt, "FloatDecode")
    pasted = add(prompt, "100", "FloatPasteBack", frames=[decode, 0], crop=[node_id(prompt, "FloatFaceCrop"), 1],
                 original=[node_id(prompt, "LoadImage"), 0], feather=0.1, color_match=True)  # fmt: skip
    add(prompt, "101", "SaveImage", images=pasted, filename_prefix="pasted")
    mask_image = add(prompt, "102", "MaskToImage", mask=["100", 1])
    add(prompt, "103", "SaveImage", images=mask_image, filename_prefix="paste_mask")
    # the photo through the same float round trip as the frames (SaveImage truncates 255 x value)
    add(prompt, "104", "SaveImage", images=[node_id(prompt, "LoadImage"), 0], filename_prefix="photo")
    result = comfy.run(prompt)
    frames, mask = saved_frames(result, "pasted"), saved_frames(result, "paste_mask")[0, :, :, 0]
    original = saved_frames(result, "photo")[0]
    assert frames.shape == (5, 600, 512, 3) and mask.shape == (600, 512)  # 0.2 s at 25 fps, the photo's size
    # The saved mask rounds its faint feathered edge down to 0; the feathered square is its bounding box
    # grown by a few pixels. Everywhere else the frames are the photo, exactly.
    (top, left), (bottom, right) = np.argwhere(mask > 0).min(0) - 4, np.argwhere(mask > 0).max(0) + 5
    outside = np.ones(mask.shape, dtype=bool)
    outside[max(top, 0) : bottom, max(left, 0) : right] = False
    assert 0.3 < outside.mean() < 0.95
    assert np.array_equal(frames[:, outside], np.broadcast_to(original[outside], frames[:, outside].shape))
    assert not np.array_equal(frames[0], original)  # the face itself was replaced


def test_zero_movement_freezes_the_portrait_in_its_own_pose(comfy):
    prompt = steps(comfy, preview_seconds=0.4)
    edited = add(prompt, "100", "FloatEditMotion", model=["1", 0], appearance=[node_id(prompt, "FloatEncodeImage"), 0],
                 motion=[node_id(prompt, "FloatSampleMotion"), 0], movement=0.0, smoothing=0.0,
                 direction_scales="", direction_offsets="")  # fmt: skip
    prompt[node_id(prompt, "FloatDecode")]["inputs"]["motion"] = edited
    add(prompt, "101", "SaveImage", images=[node_id(prompt, "FloatDecode"), 0], filename_prefix="frozen")
    frames = saved_frames(comfy.run(prompt), "frozen")
    assert len(frames) == 10 and all(np.array_equal(frame, frames[0]) for frame in frames)


def test_direction_edits_are_checked(comfy):
    prompt = steps(comfy, preview_seconds=0.2)
    edited = add(prompt, "100", "FloatEditMotion", model=["1", 0], appearance=[node_id(prompt, "FloatEncodeImage"), 0],
                 motion=[node_id(prompt, "FloatSampleMotion"), 0], movement=1.0, smoothing=0.1,
                 direction_scales="0: 1.5, 7: 0", direction_offsets="3: 0.2")  # fmt: skip
    prompt[node_id(prompt, "FloatDecode")]["inputs"]["motion"] = edited
    add(prompt, "101", "SaveImage", images=[node_id(prompt, "FloatDecode"), 0], filename_prefix="edited")
    assert len(saved_frames(comfy.run(prompt), "edited")) == 5
    # the small test model has 8 motion directions (the released one 20)
    prompt["100"]["inputs"]["direction_scales"] = "9: 2"
    result = comfy.run(prompt)
    assert result.status == "error" and "'9: 2' is not 'direction: value' with a direction from 0 to 7" in result.error.exception_message


def test_motion_resampled_to_30_fps_lasts_as_long_as_the_audio(comfy):
    prompt = steps(comfy)
    resampled = add(prompt, "100", "FloatResampleMotion", motion=[node_id(prompt, "FloatSampleMotion"), 0], fps="30")
    prompt[node_id(prompt, "FloatDecode")]["inputs"]["motion"] = resampled
    video = add(prompt, "101", "CreateVideo", images=[node_id(prompt, "FloatDecode"), 0], fps=["100", 1], audio=["9", 3])
    add(prompt, "102", "SaveVideo", video=video, filename_prefix="video/at30", format="auto", codec="auto")
    result = comfy.run(prompt)
    assert result.status == "success", result.error
    (path,) = videos(result)
    assert video_streams(path) == (90, 32, True)  # ceil(2.99 s x 30)


def test_emotion_keyframes_drive_sampling_and_bad_ones_are_named(comfy):
    prompt = steps(comfy, preview_seconds=1.0)
    keyed = add(prompt, "100", "FloatEmotionKeyframes", audio_features=["9", 0], keyframes="0: sad\n0.5: happy")
    prompt[node_id(prompt, "FloatSampleMotion")]["inputs"]["emotion"] = keyed
    add(prompt, "101", "SaveImage", images=[node_id(prompt, "FloatDecode"), 0], filename_prefix="keyed")
    assert len(saved_frames(comfy.run(prompt), "keyed")) == 25
    prompt["100"]["inputs"]["keyframes"] = "0: sad\nlater: glad"
    result = comfy.run(prompt)
    assert result.status == "error" and "'later: glad' is not 'seconds: emotion'" in result.error.exception_message


def test_saved_motion_renders_the_same_frames_when_loaded(comfy):
    prompt = steps(comfy, preview_seconds=0.4)
    add(prompt, "100", "FloatSaveMotion", motion=[node_id(prompt, "FloatSampleMotion"), 0], filename_prefix="take")
    add(prompt, "101", "SaveImage", images=[node_id(prompt, "FloatDecode"), 0], filename_prefix="direct")
    result = comfy.run(prompt)
    direct = saved_frames(result, "direct")
    (saved,) = [path for path in result.files if path.suffix == ".safetensors"]
    loaded = add(prompt, "102", "FloatLoadMotion", model=["1", 0], motion_file=f"float_motion/{saved.name} [output]")
    prompt[node_id(prompt, "FloatDecode")]["inputs"]["motion"] = loaded
    prompt["101"]["inputs"]["filename_prefix"] = "reloaded"
    assert np.array_equal(saved_frames(comfy.run(prompt), "reloaded"), direct)


def test_several_portraits_each_with_its_own_clip_give_one_video_each(comfy):
    prompt = steps(comfy)
    first_image, first_clip = node_id(prompt, "LoadImage"), node_id(prompt, "LoadAudio")
    second = add(prompt, "100", "LoadImage", image="portrait_rgba.png")
    images = add(prompt, "101", "ImageBatch", image1=[first_image, 0], image2=second)
    prompt[node_id(prompt, "FloatFaceCrop")]["inputs"]["image"] = images
    other_clip = add(prompt, "102", "LoadAudio", audio="speech_48k_stereo.wav")
    clips = add(prompt, "103", "FloatAudioBatch", audio_1=[first_clip, 0], audio_2=other_clip)
    prompt["9"]["inputs"]["audio"] = clips
    del prompt[node_id(prompt, "FloatDecode")]
    add(prompt, "104", "FloatDecodeToFile", model=["1", 0], appearance=[node_id(prompt, "FloatEncodeImage"), 0],
        motion=[node_id(prompt, "FloatSampleMotion"), 0], filename_prefix="video/pair", batch_size=8, crf=23, audio=["9", 3])  # fmt: skip
    result = comfy.run(prompt)
    assert result.status == "success", result.error
    first, second_video = sorted(videos(result))
    assert video_streams(first) == video_streams(second_video) == (SPEECH_FRAMES, 32, True)


def test_preview_mode_renders_a_short_sparse_clip(comfy):
    prompt = template_prompt(comfy, "float_step_by_step")
    set_inputs(prompt, "FloatAudioFeatures", preview_seconds=1.0)
    set_inputs(prompt, "FloatDecode", every_nth_frame=5)
    result = comfy.run(prompt)
    assert result.status == "success", result.error
    (video,) = videos(result)
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert (stream.frames, float(stream.average_rate)) == (5, 5.0)  # 1 s at 25 fps, every 5th frame


def test_pasting_while_writing_needs_both_crop_and_original(comfy):
    prompt = steps(comfy, preview_seconds=0.2)
    del prompt[node_id(prompt, "FloatDecode")]
    add(prompt, "100", "FloatDecodeToFile", model=["1", 0], appearance=[node_id(prompt, "FloatEncodeImage"), 0],
        motion=[node_id(prompt, "FloatSampleMotion"), 0], filename_prefix="video/half", batch_size=1, crf=23,
        crop=[node_id(prompt, "FloatFaceCrop"), 1])  # fmt: skip
    result = comfy.run(prompt)
    assert result.status == "error" and "connect both crop (from FLOAT Face Crop) and original" in result.error.exception_message
    assert videos(result) == []


def test_cancel_while_writing_a_file_leaves_no_file(comfy):
    prompt = steps(comfy)
    set_inputs(prompt, "LoadAudio", audio="speech_60s.wav")
    set_inputs(prompt, "FloatSampleMotion", nfe=1, seed=99)
    del prompt[node_id(prompt, "FloatDecode")]
    add(prompt, "100", "FloatDecodeToFile", model=["1", 0], appearance=[node_id(prompt, "FloatEncodeImage"), 0],
        motion=[node_id(prompt, "FloatSampleMotion"), 0], filename_prefix="video/cancelled", batch_size=1, crf=23,
        audio=["9", 3], crop=[node_id(prompt, "FloatFaceCrop"), 1], original=[node_id(prompt, "LoadImage"), 0])  # fmt: skip
    prompt_id = comfy.queue(prompt)
    comfy.wait_for(
        lambda m: m["type"] == "progress" and m["data"]["prompt_id"] == prompt_id and m["data"]["node"] == "100" and m["data"]["value"] >= 3,
        timeout=120,
    )
    comfy.interrupt()
    result = comfy.result(prompt_id, timeout=60)
    assert result.interrupted
    assert max(progress_of(comfy, prompt_id, "100")) < 1500 / 2
    assert not list(comfy.output_dir.rglob("*cancelled*")) and not list(comfy.output_dir.rglob("*.part"))


def test_blend_modes_and_their_direction_lists(comfy):
    prompt = template_prompt(comfy, "float_video_drives_head")
    blend = node_id(prompt, "FloatBlendMotion")
    prompt["900"] = {"class_type": "SaveImage", "inputs": {"images": [node_id(prompt, "FloatDecode"), 0], "filename_prefix": "blend"}}
    for mode in ("mix", "chosen directions from audio"):
        set_inputs(prompt, "FloatBlendMotion", mode=mode, directions="0-2, 5")
        assert len(saved_frames(comfy.run(prompt), "blend")) == SPEECH_FRAMES
    prompt[blend]["inputs"]["directions"] = "0-9"
    result = comfy.run(prompt)
    assert result.status == "error" and "'0-9' is not a direction or range within 0-7" in result.error.exception_message
