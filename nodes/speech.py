"""Speech nodes: audio features for the flow, and the emotion that conditions it (predicted or chosen)."""

from __future__ import annotations

from ..float_model.config import EMOTIONS
from . import stages
from .types import FLOAT_AUDIO_ENCODER, FLOAT_AUDIO_FEATURES, FLOAT_EMOTION, FLOAT_EMOTION_MODEL, FLOAT_MODEL, Emotion

FPS_INPUT = (
    "FLOAT",
    {
        "default": 25.0,
        "min": 1.0,
        "max": 240.0,
        "step": 0.01,
        "tooltip": "Frame rate of the video to make. FLOAT moves at its trained 25 fps; other rates resample the motion, so the video always lasts as long as the audio.",
    },
)
EMOTION_MODES = {"whole clip": False, "every 2 seconds": True}


def describe_emotion(emotion: Emotion) -> str:
    """The probabilities as the node shows them: one line per label, the most likely first (averaged over time)."""
    probabilities = emotion.probabilities.float()
    if probabilities.dim() == 3:
        probabilities = probabilities.mean(dim=1)
    lines = []
    for item, row in enumerate(probabilities):
        ranked = sorted(zip(emotion.labels, row.tolist()), key=lambda pair: -pair[1])
        heading = f"clip {item + 1}: " if probabilities.shape[0] > 1 else ""
        lines.append(heading + ", ".join(f"{label} {value:.0%}" for label, value in ranked))
    return "\n".join(lines)


class FloatAudioFeatures:
    DESCRIPTION = (
        "Turns speech into the per-frame wav2vec2 features the motion is sampled from. Takes AUDIO at any sample "
        "rate, any number of channels, and batches (resampled to 16 kHz mono as the official code does). Passes the "
        "AUDIO, frame count and fps on, for Create Video or Video Combine."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "extract"
    RETURN_TYPES = (FLOAT_AUDIO_FEATURES, "INT", "FLOAT", "AUDIO")
    RETURN_NAMES = ("audio_features", "frame_count", "fps", "audio")
    OUTPUT_TOOLTIPS = (
        "The features, for Sample Motion and Speech to Emotion.",
        "Frames of the finished video (per clip).",
        "The frame rate chosen.",
        "The input audio (its preview part, if one was chosen), to put under the video.",
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (FLOAT_MODEL, {"tooltip": "From FLOAT Load Model (its audio projection is used)."}),
                "audio_encoder": (FLOAT_AUDIO_ENCODER, {"tooltip": "From FLOAT Load Audio Encoder."}),
                "audio": ("AUDIO", {"tooltip": "The speech, e.g. from Load Audio. Strip music for the best lip sync."}),
                "fps": FPS_INPUT,
                "official": (
                    "BOOLEAN",
                    {"default": False, "tooltip": "Encode the whole clip in one pass as the official code does. Off: 20 s windows, same result for short clips and flat memory for long ones."},
                ),
                "preview_seconds": (
                    "FLOAT",
                    {"default": 0.0, "min": 0.0, "max": 3600.0, "step": 0.5, "tooltip": "Use only the first seconds of the audio, for a quick look (on a CPU, say). 0: the whole clip."},
                ),
            }
        }

    def extract(self, model, audio_encoder, audio, fps, official, preview_seconds):
        audio = stages.trim_audio(audio, preview_seconds)
        features = stages.extract_audio_features(model, audio_encoder, audio, fps, official)
        return (features, features.output_frames, features.fps, audio)


class FloatSpeechToEmotion:
    DESCRIPTION = (
        "Predicts the emotion in the speech (angry, disgust, fear, happy, neutral, sad, surprise) with the "
        "speech-emotion classifier, as the official code does when no emotion is chosen. The probabilities "
        "are shown on the node."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "predict"
    OUTPUT_NODE = True  # shows its result on the node
    RETURN_TYPES = (FLOAT_EMOTION, "STRING")
    RETURN_NAMES = ("emotion", "probabilities")
    OUTPUT_TOOLTIPS = ("The predicted emotion, for Sample Motion.", "The probabilities as text.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (FLOAT_MODEL, {"tooltip": "From FLOAT Load Model."}),
                "emotion_model": (FLOAT_EMOTION_MODEL, {"tooltip": "From FLOAT Load Emotion Model."}),
                "audio_features": (FLOAT_AUDIO_FEATURES, {"tooltip": "From FLOAT Audio Features (its prepared speech is classified)."}),
                "mode": (
                    list(EMOTION_MODES),
                    {"default": "whole clip", "tooltip": "whole clip: one emotion (official). every 2 seconds: the emotion may change along the clip."},
                ),
            }
        }

    def predict(self, model, emotion_model, audio_features, mode):
        emotion = stages.speech_emotion(model, emotion_model, audio_features, EMOTION_MODES[mode])
        text = describe_emotion(emotion)
        return {"ui": {"text": [text]}, "result": (emotion, text)}


class FloatEmotion:
    DESCRIPTION = (
        "A chosen emotion instead of the one in the speech: emotion redirection. Raise the emotion guidance in "
        "Sample Motion (5 to 10) to make it stronger."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "choose"
    RETURN_TYPES = (FLOAT_EMOTION,)
    RETURN_NAMES = ("emotion",)
    OUTPUT_TOOLTIPS = ("The emotion, for Sample Motion.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"emotion": (list(EMOTIONS), {"default": "neutral", "tooltip": "The emotion to show."})}}

    def choose(self, emotion):
        return (stages.chosen_emotion(emotion, EMOTIONS),)


def parse_keyframes(text: str, labels: tuple[str, ...]) -> list[tuple[float, str]]:
    """'0: neutral, 2.5: happy' (commas or new lines; seconds, then a label) -> [(0.0, 'neutral'), (2.5, 'happy')]."""
    keyframes = []
    for entry in filter(None, (part.strip() for part in text.replace("\n", ",").split(","))):
        time, separator, label = entry.partition(":")
        try:
            seconds = float(time.strip().rstrip("s"))
        except ValueError:
            seconds = None
        if not separator or seconds is None or seconds < 0 or label.strip().lower() not in labels:
            raise ValueError(f"emotion keyframe {entry!r} is not 'seconds: emotion' with an emotion among {', '.join(labels)}")
        keyframes.append((seconds, label.strip().lower()))
    if not keyframes:
        raise ValueError("no emotion keyframes: write one per line, e.g. '0: neutral' then '3.5: happy'")
    return keyframes


class FloatEmotionKeyframes:
    DESCRIPTION = (
        "Emotion that changes over the clip: an emotion at each given time, blended smoothly in between and held "
        "before the first and after the last. For per-segment emotion redirection; raise emotion guidance to 5-10."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "schedule"
    RETURN_TYPES = (FLOAT_EMOTION,)
    RETURN_NAMES = ("emotion",)
    OUTPUT_TOOLTIPS = ("One emotion per frame, for Sample Motion.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "audio_features": (FLOAT_AUDIO_FEATURES, {"tooltip": "From FLOAT Audio Features: the clip the emotion follows."}),
                "keyframes": (
                    "STRING",
                    {"default": "0: neutral\n2: happy", "multiline": True, "tooltip": f"One 'seconds: emotion' per line. Emotions: {', '.join(EMOTIONS)}."},
                ),
            }
        }

    def schedule(self, audio_features, keyframes):
        return (stages.emotion_keyframes(audio_features, parse_keyframes(keyframes, EMOTIONS), EMOTIONS),)


class FloatAudioBatch:
    DESCRIPTION = (
        "Several speech clips as one AUDIO batch, so that a batch of portraits each gets its own clip in one run "
        "(portrait 1 with clip 1 ...). Clips are resampled to the first clip's rate; shorter ones end in silence."
    )
    CATEGORY = "FLOAT"
    FUNCTION = "batch"
    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)
    OUTPUT_TOOLTIPS = ("The clips as one AUDIO batch, for Audio Features.",)

    @classmethod
    def INPUT_TYPES(cls):
        clip = ("AUDIO", {"tooltip": "A speech clip, in the order of the portraits."})
        return {"required": {"audio_1": clip, "audio_2": clip}, "optional": {"audio_3": clip, "audio_4": clip}}

    def batch(self, audio_1, audio_2, audio_3=None, audio_4=None):
        return (stages.batch_audio([clip for clip in (audio_1, audio_2, audio_3, audio_4) if clip is not None]),)


NODE_CLASS_MAPPINGS = {
    "FloatAudioFeatures": FloatAudioFeatures,
    "FloatSpeechToEmotion": FloatSpeechToEmotion,
    "FloatEmotion": FloatEmotion,
    "FloatEmotionKeyframes": FloatEmotionKeyframes,
    "FloatAudioBatch": FloatAudioBatch,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "FloatAudioFeatures": "FLOAT Audio Features",
    "FloatSpeechToEmotion": "FLOAT Speech to Emotion",
    "FloatEmotion": "FLOAT Emotion",
    "FloatEmotionKeyframes": "FLOAT Emotion Keyframes",
    "FloatAudioBatch": "FLOAT Audio Batch",
}
