"""FLOAT Animate: the whole pipeline in one node, calling the same stage functions as the step nodes."""

from __future__ import annotations

from ..float_model.config import EMOTIONS
from . import stages
from .decode import BATCH_SIZE_INPUT
from .sample import SAMPLING_INPUTS
from .speech import FPS_INPUT
from .types import FLOAT_AUDIO_ENCODER, FLOAT_EMOTION_MODEL, FLOAT_MODEL

FROM_SPEECH = "from speech"


class FloatAnimate:
    DESCRIPTION = (
        "Portrait + speech -> talking-head frames in one node: face crop, encoding, audio features, emotion "
        "(predicted from the speech or chosen), flow sampling and decoding. Connect frames, audio and fps to "
        "Create Video and Save Video."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "animate"
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT", "INT")
    RETURN_NAMES = ("frames", "audio", "fps", "frame_count")
    OUTPUT_TOOLTIPS = (
        "The 512 x 512 video frames.",
        "The input audio, unchanged, to put under the video.",
        "The frame rate of the frames.",
        "Frames per clip.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (FLOAT_MODEL, {"tooltip": "From FLOAT Load Model."}),
                "audio_encoder": (FLOAT_AUDIO_ENCODER, {"tooltip": "From FLOAT Load Audio Encoder."}),
                "image": ("IMAGE", {"tooltip": "The portrait: a photo with a face (cropped here), or a batch of them."}),
                "audio": ("AUDIO", {"tooltip": "The speech, any sample rate and channels."}),
                "emotion": (
                    [FROM_SPEECH, *EMOTIONS],
                    {"default": FROM_SPEECH, "tooltip": "from speech: predicted by the emotion model (connect one). Or choose one (raise emotion guidance to 5-10)."},
                ),
                "crop_face": ("BOOLEAN", {"default": True, "tooltip": "Find the face and crop the official square. Off: the image must already be a square portrait."}),
                **SAMPLING_INPUTS,
                "fps": FPS_INPUT,
                "decode_batch_size": BATCH_SIZE_INPUT,
            },
            "optional": {
                "emotion_model": (FLOAT_EMOTION_MODEL, {"tooltip": "From FLOAT Load Emotion Model; needed when emotion is 'from speech'."}),
            },
        }

    def animate(self, model, audio_encoder, image, audio, emotion, crop_face, nfe, solver, audio_guidance, emotion_guidance, seed, official, fps, decode_batch_size, emotion_model=None):
        if emotion == FROM_SPEECH and emotion_model is None:
            raise ValueError("emotion is 'from speech' but no emotion model is connected: add FLOAT Load Emotion Model, or choose an emotion")
        portrait = stages.crop_faces(image)[0] if crop_face else image
        appearance = stages.encode_portraits(model, portrait)
        features = stages.extract_audio_features(model, audio_encoder, audio, fps, official)
        if emotion == FROM_SPEECH:
            chosen = stages.speech_emotion(model, emotion_model, features, per_window=False)
        else:
            chosen = stages.chosen_emotion(emotion, EMOTIONS)
        motion = stages.sample(model, appearance, features, chosen, nfe, solver, audio_guidance, emotion_guidance, seed, official)
        frames, fps = stages.decode(model, appearance, motion, decode_batch_size)
        return (frames, audio, fps, features.output_frames)


NODE_CLASS_MAPPINGS = {"FloatAnimate": FloatAnimate}
NODE_DISPLAY_NAME_MAPPINGS = {"FloatAnimate": "FLOAT Animate (all in one)"}
