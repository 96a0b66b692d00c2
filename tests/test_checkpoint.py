"""Loading every checkpoint layout through the real loader, conversion, and the errors users see."""

import json
import logging
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch

from conftest import make_small_config
from float_model import CheckpointError, FloatConfig, convert_checkpoint, load_float_model, save_model
from float_model.checkpoint import CONFIG_METADATA_KEY, read_metadata, read_tensors
from float_model.config import AUDIO_MODEL_NAME, EMOTION_MODEL_NAME
from float_model.synthetic import write_official_layout


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def copy_folder(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_released_layout_loads_by_name(small_model_dir, small_config):
    model = load_float_model(small_model_dir)
    assert model.config == small_config  # sizes inferred from shapes, HF configs from config.json
    raw = torch.load(small_model_dir / "float.pth", weights_only=True)
    loaded = model.state_dict()
    for key, value in raw.items():
        if key in loaded:
            assert torch.equal(loaded[key], value), key
    # the HF weights come from the folders, with legacy weight-norm names mapped
    hf = safetensors.torch.load_file(str(small_model_dir / AUDIO_MODEL_NAME / "model.safetensors"))
    live = "audio_encoder.wav2vec2.encoder.pos_conv_embed.conv.parametrizations.weight.original0"
    assert torch.equal(loaded[live], hf["wav2vec2.encoder.pos_conv_embed.conv.weight_g"])


def test_buffers_present_or_absent_give_the_same_model(tmp_path, small_config, small_model):
    folder = write_official_layout(tmp_path, small_config, seed=0, with_buffers=True)
    assert "fmt.alignment_mask" in torch.load(folder / "float.pth", weights_only=True)
    assert_same_weights(load_float_model(folder), small_model)


def test_safetensors_float_file(tmp_path, small_config, small_model):
    folder = write_official_layout(tmp_path, small_config, seed=0, float_format="safetensors")
    assert not (folder / "float.pth").exists()
    assert_same_weights(load_float_model(folder), small_model)


def test_hf_folders_as_bin_and_with_parametrization_names(tmp_path, small_model_dir, small_model):
    folder = copy_folder(small_model_dir, tmp_path / "m")
    audio = folder / AUDIO_MODEL_NAME
    tensors = safetensors.torch.load_file(str(audio / "model.safetensors"))
    renamed = {k.replace("conv.weight_g", "conv.parametrizations.weight.original0").replace("conv.weight_v", "conv.parametrizations.weight.original1"): v for k, v in tensors.items()}
    (audio / "model.safetensors").unlink()
    torch.save(renamed, audio / "pytorch_model.bin")
    assert_same_weights(load_float_model(folder), small_model)


def test_set_soft_layout_with_hf_folders_in_models_audio(tmp_path, small_model_dir, small_model):
    models = tmp_path / "models"
    shutil.copytree(small_model_dir, models / "float", ignore=shutil.ignore_patterns("wav2vec*"))
    for name in (AUDIO_MODEL_NAME, EMOTION_MODEL_NAME):
        shutil.copytree(small_model_dir / name, models / "audio" / name)
    assert_same_weights(load_float_model(models / "float"), small_model)


def test_single_file_with_every_network(tmp_path, small_model):
    """FLOAT.safetensors: all networks under their module paths, no metadata: sizes from shapes."""
    state = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1", "weight_v"): v for k, v in small_model.state_dict().items()}
    safetensors.torch.save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "FLOAT.safetensors"))
    model = load_float_model(tmp_path / "FLOAT.safetensors")
    assert_same_weights(model, small_model)
    assert model.config.wav2vec2["hidden_size"] == 48 and model.config.emotion["hidden_size"] == 64


def test_individual_network_files(tmp_path, small_model_dir, small_model):
    """set-soft's split files: each network with its own prefix stripped."""
    raw = torch.load(small_model_dir / "float.pth", weights_only=True)
    parts = {
        "motion_autoencoder/encoder.safetensors": "motion_autoencoder.enc.",
        "motion_autoencoder/decoder.safetensors": "motion_autoencoder.dec.",
        "fmt/fmt.safetensors": "fmt.",
        "audio_projections/projection.safetensors": "audio_encoder.audio_projection.",
    }
    folder = tmp_path / "float"
    for name, prefix in parts.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        part = {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}
        safetensors.torch.save_file(part, str(folder / name))
    for name in (AUDIO_MODEL_NAME, EMOTION_MODEL_NAME):
        shutil.copytree(small_model_dir / name, folder / name)
    assert_same_weights(load_float_model(folder), small_model)
    files = [folder / name for name in parts]
    assert_same_weights(load_float_model(files, audio_encoder=folder / AUDIO_MODEL_NAME, emotion_encoder=folder / EMOTION_MODEL_NAME), small_model)


def test_checkpoint_tensors_win_over_hf_folders(tmp_path, small_model_dir):
    folder = copy_folder(small_model_dir, tmp_path / "m")
    raw = torch.load(folder / "float.pth", weights_only=True)
    key = "audio_encoder.wav2vec2.feature_projection.projection.bias"
    raw[key] = torch.full((48,), 7.0)
    torch.save(raw, folder / "float.pth")
    assert torch.all(load_float_model(folder).state_dict()[key] == 7.0)


def test_training_wrappers_are_unwrapped(tmp_path, small_model_dir, small_model):
    folder = copy_folder(small_model_dir, tmp_path / "m")
    raw = torch.load(folder / "float.pth", weights_only=True)
    torch.save({"state_dict": {"module." + k: v for k, v in raw.items()}}, folder / "float.pth")
    assert_same_weights(load_float_model(folder), small_model)


def test_pos_embed_is_loaded_not_recomputed(tmp_path, small_model_dir):
    folder = copy_folder(small_model_dir, tmp_path / "m")
    raw = torch.load(folder / "float.pth", weights_only=True)
    raw["fmt.pos_embed"] = torch.randn_like(raw["fmt.pos_embed"])
    torch.save(raw, folder / "float.pth")
    assert torch.equal(load_float_model(folder).fmt.pos_embed, raw["fmt.pos_embed"])


def test_attention_band_is_read_from_a_stored_mask(tmp_path, small_config):
    config = make_small_config(attention_window=3)
    folder = write_official_layout(tmp_path, config, with_buffers=True)
    assert load_float_model(folder).config.fmt.attention_window == 3


def test_convert_writes_safetensors_with_config_metadata(tmp_path, small_model_dir, small_model):
    out = tmp_path / "float.safetensors"
    config = convert_checkpoint(small_model_dir / "float.pth", out)
    assert FloatConfig.from_json(read_metadata(out)[CONFIG_METADATA_KEY]) == config
    assert not any(k.startswith(("audio_encoder.wav2vec2", "emotion_encoder")) for k in read_tensors(out))
    for name in (AUDIO_MODEL_NAME, EMOTION_MODEL_NAME):
        shutil.copytree(small_model_dir / name, tmp_path / name)
    assert_same_weights(load_float_model(out), small_model)

    single = tmp_path / "FLOAT.safetensors"
    convert_checkpoint(small_model_dir, single, include_hf_folders=True)
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.move(single, alone / "FLOAT.safetensors")
    assert_same_weights(load_float_model(alone / "FLOAT.safetensors"), small_model)


def test_metadata_config_covers_what_shapes_cannot_tell(tmp_path):
    """Four heads and a 30 + 6 frame window cannot be read from shapes; the metadata carries them."""
    config = make_small_config(num_heads=4, num_frames=30, num_prev_frames=6, attention_window=1)
    folder = write_official_layout(tmp_path / "src", config)
    model = load_float_model(folder)
    assert model.config.fmt.num_heads == 8  # shapes alone: the official head count
    exported = tmp_path / "export" / "float.safetensors"
    exported.parent.mkdir()
    # an export of a model with the right config (as training writes it)
    model.config = config
    save_model(model, exported)
    reloaded = load_float_model(exported)
    assert reloaded.config.fmt == config.fmt


def test_model_without_emotion_folder_asks_for_a_chosen_emotion(tmp_path, small_model_dir):
    folder = copy_folder(small_model_dir, tmp_path / "m")
    shutil.rmtree(folder / EMOTION_MODEL_NAME)
    model = load_float_model(folder)
    assert model.emotion_encoder is None and model.config.emotion is None
    with pytest.raises(RuntimeError, match="choose an emotion"):
        model.emotion(torch.randn(1, 16000))
    with pytest.raises(CheckpointError, match=EMOTION_MODEL_NAME):
        load_float_model(folder, emotion_encoder=True)
    assert load_float_model(small_model_dir, emotion_encoder=False).emotion_encoder is None


def test_missing_audio_encoder_names_the_folder(tmp_path, small_model_dir):
    folder = copy_folder(small_model_dir, tmp_path / "m")
    shutil.rmtree(folder / AUDIO_MODEL_NAME)
    with pytest.raises(CheckpointError, match=AUDIO_MODEL_NAME):
        load_float_model(folder)


def test_missing_tensors_name_the_file_and_keys(tmp_path, small_model_dir):
    folder = copy_folder(small_model_dir, tmp_path / "m")
    raw = torch.load(folder / "float.pth", weights_only=True)
    dropped = ("fmt.blocks.0.", "fmt.decoder.linear.")
    torch.save({k: v for k, v in raw.items() if not k.startswith(dropped)}, folder / "float.pth")
    with pytest.raises(CheckpointError, match=r"float\.pth.*fmt\.blocks\.0\.attn") as error:
        load_float_model(folder)
    assert "12 tensors of the flow-matching transformer" in str(error.value)  # block 0 and the output layer


def test_unknown_extra_tensors_are_named_in_a_warning(tmp_path, small_model_dir, caplog):
    folder = copy_folder(small_model_dir, tmp_path / "m")
    raw = torch.load(folder / "float.pth", weights_only=True)
    raw["fmt.extra_head.weight"] = torch.zeros(3)
    raw["totally_unrelated"] = torch.zeros(1)
    torch.save(raw, folder / "float.pth")
    with caplog.at_level(logging.WARNING):
        load_float_model(folder)
    assert "fmt.extra_head.weight" in caplog.text and "totally_unrelated" in caplog.text


def test_foreign_checkpoint_says_what_it_looks_like(tmp_path):
    path = tmp_path / "float.safetensors"
    safetensors.torch.save_file({"model.diffusion_model.input_blocks.0.weight": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="Stable Diffusion"):
        load_float_model(path)
    safetensors.torch.save_file({"feature_extractor.conv_layers.0.conv.weight": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="wav2vec2 model"):
        load_float_model(path)


@pytest.mark.parametrize("name", ["float.pth", "float.safetensors"])
def test_truncated_files_are_reported(tmp_path, small_model_dir, name):
    folder = copy_folder(small_model_dir, tmp_path / "m")
    if name.endswith(".safetensors"):
        convert_checkpoint(folder / "float.pth", folder / name)
        (folder / "float.pth").unlink()
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_float_model(folder)


def test_empty_file_is_reported(tmp_path):
    (tmp_path / "float.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_float_model(tmp_path)


class NotATensor:
    pass


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"fmt.pos_embed": torch.zeros(1), "payload": NotATensor()}, tmp_path / "float.pth")
    with pytest.raises(CheckpointError, match="refuses to unpickle"):
        load_float_model(tmp_path)


def test_swapped_hf_folders_are_reported(tmp_path, small_model_dir):
    folder = copy_folder(small_model_dir, tmp_path / "m")
    with pytest.raises(CheckpointError, match="not the wav2vec2 model"):
        load_float_model(folder, audio_encoder=folder / EMOTION_MODEL_NAME)


def test_networks_of_different_sizes_are_reported(tmp_path, small_model_dir):
    folder = copy_folder(small_model_dir, tmp_path / "m")
    raw = torch.load(folder / "float.pth", weights_only=True)
    raw["fmt.blocks.1.mlp.fc1.weight"] = torch.zeros(16, 64)
    torch.save(raw, folder / "float.pth")
    with pytest.raises(CheckpointError, match=r"fmt\.blocks\.1\.mlp\.fc1\.weight.*different models"):
        load_float_model(folder)


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(CheckpointError, match="no FLOAT checkpoint"):
        load_float_model(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        load_float_model(tmp_path / "nope.pth")


def test_hf_folder_without_config_is_reported(tmp_path, small_model_dir):
    folder = copy_folder(small_model_dir, tmp_path / "m")
    (folder / AUDIO_MODEL_NAME / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_float_model(folder)
    (folder / AUDIO_MODEL_NAME / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_float_model(folder)


def test_dtype_and_device_on_load(small_model_dir):
    model = load_float_model(small_model_dir, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert model.motion_basis().dtype == torch.bfloat16  # the QR itself runs in float32
    encoded = model.encode_image(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert encoded.identity_latent.dtype == torch.bfloat16


def test_loader_never_needs_the_network(small_model_dir, monkeypatch):
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError("the loader tried to reach the hub")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    load_float_model(small_model_dir)
    assert json.loads((small_model_dir / AUDIO_MODEL_NAME / "config.json").read_text())["hidden_size"] == 48


# --- The networks one by one, as ComfyUI's three loader nodes read them ---------------------------------------


def test_networks_loaded_one_by_one_equal_the_whole_model(small_model_dir, small_model):
    from float_model.checkpoint import load_audio_encoder, load_emotion_encoder, load_float_networks
    from float_model.speech import encode_audio, predict_emotion, prepare_audio

    networks = load_float_networks(small_model_dir / "float.pth")
    assert networks.audio_encoder.wav2vec2 is None and networks.emotion_encoder is None
    wav2vec2 = load_audio_encoder(small_model_dir / AUDIO_MODEL_NAME)
    emotion = load_emotion_encoder(small_model_dir / EMOTION_MODEL_NAME)
    assembled = networks.with_speech_networks(wav2vec2=wav2vec2, emotion_encoder=emotion)
    waveform, frames = prepare_audio(torch.randn(1, 20000, generator=torch.Generator().manual_seed(0)), 16000)
    torch.testing.assert_close(encode_audio(assembled, waveform, frames), encode_audio(small_model, waveform, frames), rtol=0, atol=0)
    torch.testing.assert_close(predict_emotion(assembled, waveform), predict_emotion(small_model, waveform), rtol=0, atol=0)
    # the loaded networks themselves are left as they were
    assert networks.audio_encoder.wav2vec2 is None and networks.emotion_encoder is None
    with pytest.raises(RuntimeError, match="without its wav2vec2 audio encoder"):
        networks.audio_features(waveform, frames)


def test_speech_networks_load_from_a_file_that_holds_them(tmp_path, small_model_dir, small_model):
    from float_model.checkpoint import load_audio_encoder, load_emotion_encoder

    single = tmp_path / "FLOAT.safetensors"
    save_model(small_model, single)
    wav2vec2 = load_audio_encoder(single)
    emotion = load_emotion_encoder(single)
    for loaded, original in ((wav2vec2, small_model.audio_encoder.wav2vec2), (emotion, small_model.emotion_encoder)):
        for (name, value), (_, expected) in zip(loaded.state_dict().items(), original.state_dict().items()):
            assert torch.equal(value, expected), name
    with pytest.raises(CheckpointError, match="holds no wav2vec2 audio encoder"):
        load_audio_encoder(small_model_dir / "float.pth")


def test_wrong_speech_network_for_the_model_is_refused(small_model_dir):
    from float_model.checkpoint import load_audio_encoder, load_emotion_encoder, load_float_networks

    networks = load_float_networks(small_model_dir / "float.pth")
    # The emotion model's wav2vec2 is a wav2vec2 too, but not the one the audio projection was trained on.
    wrong = load_audio_encoder(small_model_dir / EMOTION_MODEL_NAME)
    with pytest.raises(ValueError, match="gives 2 layers x 64 = 128 features per frame, but the FLOAT model.s audio projection takes 96"):
        networks.with_speech_networks(wav2vec2=wrong)
    with pytest.raises(CheckpointError, match="speech-emotion model"):
        load_emotion_encoder(small_model_dir / AUDIO_MODEL_NAME)
