"""Loader nodes: the FLOAT networks, the wav2vec2 audio encoder and the speech-emotion classifier.

Files come from models/float (and `float:` folders in extra_model_paths.yaml); the HuggingFace folders
may also sit in models/audio. A released file that is missing is downloaded on first use. A loader's
output stays in ComfyUI's cache while its settings are unchanged, so models load once per session.
"""

from __future__ import annotations

from ..float_model.checkpoint import load_audio_encoder, load_float_networks
from . import runtime
from .types import FLOAT_AUDIO_ENCODER, FLOAT_EMOTION_MODEL, FLOAT_MODEL, LazyEmotionModel, LoadedAudioEncoder, LoadedFloat

def _placement_inputs() -> dict:
    # Built on every INPUT_TYPES call, so the device list follows the machine ComfyUI runs on.
    return {
        "device": (
            runtime.device_choices(),
            {"default": "auto", "tooltip": "Where the network computes. auto: ComfyUI's device (the GPU if there is one)."},
        ),
        "precision": (
            ["auto", "fp32", "fp16", "bf16"],
            {"default": "auto", "tooltip": "auto: bf16 or fp16 on GPUs that are fast at it, fp32 elsewhere. fp32 matches the official results exactly."},
        ),
        "keep_loaded": (
            "BOOLEAN",
            {
                "default": True,
                "tooltip": "Keep the network on the device between runs (fastest). Off: it waits in RAM and moves to the GPU only while it works, freeing VRAM for other models.",
            },
        ),
    }


class LoadFloatModel:
    DESCRIPTION = (
        "Loads the FLOAT networks: the motion auto-encoder (encodes and renders the face), the flow-matching "
        "transformer (samples motion from speech) and the audio projection. float.pth, FLOAT.safetensors or a "
        "converted .safetensors from models/float; float.pth is downloaded there if missing (non-commercial licence)."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "load"
    RETURN_TYPES = (FLOAT_MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The FLOAT model, for Encode Image, Audio Features, Sample Motion and Decode.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": (runtime.choices("float"), {"tooltip": "The FLOAT checkpoint in models/float."}),
                **_placement_inputs(),
            }
        }

    def load(self, model_name: str, device: str, precision: str, keep_loaded: bool):
        where = runtime.placement(device, precision, keep_loaded)
        path = runtime.locate_or_download(model_name, "float")
        model = load_float_networks(path, where.resting_device, where.dtype)
        return (LoadedFloat(model, where, path),)


class LoadFloatAudioEncoder:
    DESCRIPTION = (
        "Loads the wav2vec2 audio encoder that turns speech into features (facebook/wav2vec2-base-960h): its folder "
        "in models/float or models/audio, or FLOAT.safetensors, which holds it. Downloaded if missing."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "load"
    RETURN_TYPES = (FLOAT_AUDIO_ENCODER,)
    RETURN_NAMES = ("audio_encoder",)
    OUTPUT_TOOLTIPS = ("The audio encoder, for Audio Features.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "encoder_name": (runtime.choices("audio"), {"tooltip": "The wav2vec2 folder (or a file holding it)."}),
                **_placement_inputs(),
            }
        }

    def load(self, encoder_name: str, device: str, precision: str, keep_loaded: bool):
        where = runtime.placement(device, precision, keep_loaded)
        path = runtime.locate_or_download(encoder_name, "audio")
        return (LoadedAudioEncoder(load_audio_encoder(path, where.resting_device, where.dtype), where, path),)


class LoadFloatEmotionModel:
    DESCRIPTION = (
        "Chooses the speech-emotion classifier (r-f/wav2vec-english-speech-emotion-recognition, 1.27 GB). It is read "
        "(and downloaded if missing) only when emotion is predicted from speech, so graphs that choose their emotion never load it."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "load"
    RETURN_TYPES = (FLOAT_EMOTION_MODEL,)
    RETURN_NAMES = ("emotion_model",)
    OUTPUT_TOOLTIPS = ("The emotion classifier, for Speech to Emotion and FLOAT Animate.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "emotion_model_name": (runtime.choices("emotion"), {"tooltip": "The speech-emotion folder (or a file holding it)."}),
                **_placement_inputs(),
            }
        }

    def load(self, emotion_model_name: str, device: str, precision: str, keep_loaded: bool):
        # Neither read nor downloaded here: Speech to Emotion does that when it first runs.
        return (LazyEmotionModel(emotion_model_name, runtime.placement(device, precision, keep_loaded)),)


NODE_CLASS_MAPPINGS = {
    "FloatLoadModel": LoadFloatModel,
    "FloatLoadAudioEncoder": LoadFloatAudioEncoder,
    "FloatLoadEmotionModel": LoadFloatEmotionModel,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "FloatLoadModel": "FLOAT Load Model",
    "FloatLoadAudioEncoder": "FLOAT Load Audio Encoder",
    "FloatLoadEmotionModel": "FLOAT Load Emotion Model",
}
