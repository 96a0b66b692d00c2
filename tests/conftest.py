"""Shared fixtures: small FLOAT configurations and model folders written in the released layout.

HF_HUB_OFFLINE must be set before huggingface_hub/transformers are imported, or an accidental hub
call would retry for about 23 s instead of failing at once.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from float_model import FloatConfig, FMTConfig, MotionAutoEncoderConfig, load_float_model  # noqa: E402
from float_model.config import AUDIO_MODEL_NAME, EMOTION_MODEL_NAME, bundled_hf_config  # noqa: E402
from float_model.synthetic import write_official_layout  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


def small_wav2vec2(model_name: str, hidden: int) -> dict:
    """The official config of a HuggingFace model, shrunk: same architecture, tiny sizes.

    Head counts stay official (12 and 16), so the sizes can also be inferred from shapes alone.
    """
    config = dict(bundled_hf_config(model_name))
    config.update(
        hidden_size=hidden,
        num_hidden_layers=2,
        intermediate_size=64,
        conv_dim=[32] * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    return config


def make_small_config(emotion: bool = True, **fmt_overrides) -> FloatConfig:
    fmt = dict(motion_dim=64, audio_dim=32, hidden_size=64, depth=2, num_heads=8)
    fmt.update(fmt_overrides)
    return FloatConfig(
        motion_autoencoder=MotionAutoEncoderConfig(image_size=32, latent_dim=64, motion_dim=8, channel_base=1024, channel_max=64),
        fmt=FMTConfig(**fmt),
        wav2vec2=small_wav2vec2(AUDIO_MODEL_NAME, 48),
        emotion=small_wav2vec2(EMOTION_MODEL_NAME, 64) if emotion else None,
    )


@pytest.fixture(scope="session")
def small_config() -> FloatConfig:
    return make_small_config()


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory, small_config) -> Path:
    """float.pth + both HuggingFace folders, released layout, small sizes, random weights."""
    return write_official_layout(tmp_path_factory.mktemp("small_model"), small_config, seed=0)


@pytest.fixture(scope="session")
def small_model(small_model_dir):
    return load_float_model(small_model_dir)
