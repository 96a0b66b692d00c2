"""Phase 2 on a tiny configuration and a synthetic cache: the loss falls, resume is exact, two processes
agree with one, and the export loads in float_model and samples motion."""

from __future__ import annotations

import datetime
import json
import os
import socket
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torch.multiprocessing as mp

from float_model import load_float_model
from float_model.config import AUDIO_MODEL_NAME
from float_model.sampling import sample_motion
from float_model.config import FloatConfig
from training.cache_fmt import CacheIndex, CachedClip
from training.config import FMTTrainConfig, load_config
from training.export import export
from training.train_fmt import train

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "training" / "configs" / "fmt_tiny.yaml"


def write_cache(folder: Path, motion_dim: int, stacked_dim: int, clips: int = 6, frames: int = 80, seed: int = 0) -> Path:
    """Clips whose motion follows their audio: a loudness envelope moves the audio features and, through a
    fixed direction, the motion latents (lips following speech), over a slow per-clip drift (head pose)."""
    generator = torch.Generator().manual_seed(seed)
    audio_direction = torch.randn(stacked_dim, generator=generator)
    motion_direction = torch.randn(motion_dim, generator=generator)
    entries = []
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    for clip in range(clips):
        envelope = torch.sin(torch.arange(frames) / (2 + clip) + torch.rand((), generator=generator) * 6).abs()
        audio = envelope[:, None] * audio_direction + 0.1 * torch.randn(frames, stacked_dim, generator=generator)
        drift = torch.randn(motion_dim, generator=generator) * 0.3 + torch.linspace(0, 0.2, frames)[:, None]
        motion = drift + envelope[:, None] * motion_direction
        emotion = torch.softmax(torch.randn(7, generator=generator), dim=0)
        name = f"clip{clip}"
        tensors = {"motion": motion.float(), "audio": audio.half(), "emotion": emotion}
        safetensors.torch.save_file(tensors, str(folder / "clips" / f"{name}.safetensors"), metadata={"fps": "25"})
        entries.append(CachedClip(name, frames, folder / "clips" / f"{name}.safetensors"))
    CacheIndex(entries, motion_dim, stacked_dim, 7, FloatConfig().to_json()).save(folder)
    return folder


def tiny_config(tmp_path: Path, *overrides: str) -> FMTTrainConfig:
    cache = tmp_path / "cache"
    if not cache.exists():
        write_cache(cache, motion_dim=16, stacked_dim=24)
    return load_config(FMTTrainConfig, TINY, [f"data.cache={cache}", f"run.out_dir={tmp_path / 'run'}", *overrides])


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_loss_falls_on_a_tiny_model(tmp_path):
    run, _ = train(tiny_config(tmp_path))
    curve = losses(run)
    assert len(curve) == 60 and all(torch.isfinite(torch.tensor(curve)))
    first, last = sum(curve[:5]) / 5, sum(curve[-5:]) / 5
    assert last < 0.7 * first, f"loss went from {first:.3f} to {last:.3f}"
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "latest.txt").is_file()


def test_resume_is_exact(tmp_path):
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    _, straight = train(tiny_config(tmp_path, "run.steps=8", "run.checkpoint_every=4", f"run.out_dir={straight_dir}"))
    train(tiny_config(tmp_path, "run.steps=4", "run.checkpoint_every=4", f"run.out_dir={resumed_dir}"))
    _, resumed = train(tiny_config(tmp_path, "run.steps=8", "run.checkpoint_every=4", f"run.out_dir={resumed_dir}"))
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert losses(straight_dir) == losses(resumed_dir)
    last = torch.load(resumed_dir / "checkpoints" / "step_000000008.pt", weights_only=True)
    first = torch.load(straight_dir / "checkpoints" / "step_000000008.pt", weights_only=True)
    assert all(torch.equal(first["ema"]["shadow"][k], last["ema"]["shadow"][k]) for k in first["ema"]["shadow"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, train_function, config, out: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    # A short timeout: a rank left waiting for its partner fails the test in minutes instead of hanging CI.
    torch.distributed.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
    _, trained = train_function(config)
    torch.save(trained.state_dict(), out / f"rank{rank}.pt")


def train_in_two_processes(train_function, config, out: Path) -> list[dict[str, torch.Tensor]]:
    """Run a phase's train(config) as two gloo processes, as torchrun would; each rank's final weights."""
    mp.spawn(_worker, args=(2, _free_port(), train_function, config, out), nprocs=2, join=True)
    return [torch.load(out / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]


def test_two_processes_agree_with_each_other_and_with_one(tmp_path):
    single_dir, double_dir = tmp_path / "single", tmp_path / "double"
    train(tiny_config(tmp_path, "run.steps=6", f"run.out_dir={single_dir}"))
    config = tiny_config(tmp_path, "run.steps=6", f"run.out_dir={double_dir}")
    rank0, rank1 = train_in_two_processes(train, config, tmp_path)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    # the same global batch of the same windows: the same curve, up to the order of float additions
    torch.testing.assert_close(torch.tensor(losses(double_dir)), torch.tensor(losses(single_dir)), rtol=1e-4, atol=1e-6)


def test_export_loads_in_float_model_and_samples_motion(tmp_path, small_model_dir, small_config):
    # an FMT the size of the small test model, trained briefly on a cache of its widths
    cache = write_cache(tmp_path / "cache", motion_dim=64, stacked_dim=small_config.audio_feature_dim, frames=70)
    sizes = [f"model.{key}={value}" for key, value in vars(small_config.fmt).items()]
    run, trained = train(load_config(FMTTrainConfig, TINY, [*sizes, f"data.cache={cache}", f"run.out_dir={tmp_path / 'run'}", "run.steps=3"]))
    exported = export(run, tmp_path / "float_tuned.safetensors", base=small_model_dir / "float.pth")

    model = load_float_model(exported, audio_encoder=small_model_dir / AUDIO_MODEL_NAME)
    # the motion auto-encoder comes from the base, the FMT from the run (its EMA weights)
    base = load_float_model(small_model_dir)
    assert torch.equal(model.motion_autoencoder.enc.fc[0].weight, base.motion_autoencoder.enc.fc[0].weight)
    shadow = torch.load(run / "checkpoints" / "step_000000003.pt", weights_only=True)["ema"]["shadow"]
    assert torch.equal(model.fmt.blocks[0].attn.qkv.weight, shadow["fmt.blocks.0.attn.qkv.weight"])
    assert torch.equal(model.audio_encoder.audio_projection[0].weight, shadow["audio_projection.0.weight"])
    motion = sample_motion(model, torch.randn(1, 60, 32), torch.randn(1, 64), torch.full((1, 7), 1 / 7), nfe=2, seed=0)
    assert motion.shape == (1, 60, 64) and torch.isfinite(motion).all()


def test_overrides_read_numbers_as_numbers(tmp_path):
    config = tiny_config(tmp_path, "optim.lr=1e-5", "optim.betas=[0.5, 0.9]", "run.steps=12", "run.precision=bf16")
    assert (config.optim.lr, config.optim.betas, config.run.steps, config.run.precision) == (1e-5, (0.5, 0.9), 12, "bf16")
    with pytest.raises(ValueError, match="optim.lr must be a number, got 'fast'"):
        tiny_config(tmp_path, "optim.lr=fast")


def test_unknown_settings_and_bad_overrides_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown setting.*optim.learning_rate"):
        tiny_config(tmp_path, "optim.learning_rate=1")
    with pytest.raises(ValueError, match="not key=value"):
        tiny_config(tmp_path, "optim.lr")
    with pytest.raises(FileNotFoundError, match="training.cache_fmt"):
        train(load_config(FMTTrainConfig, TINY, [f"data.cache={tmp_path / 'nothing'}", f"run.out_dir={tmp_path / 'run'}"]))


def test_prepared_clips_through_cache_training_and_export(tmp_path, small_model, small_model_dir, small_config):
    """The documented path end to end: prepared clips -> cache -> phase 2 -> export -> float_model."""
    from test_training_cache import write_clip
    from training.cache_fmt import build_cache

    clips = tmp_path / "clips"
    clips.mkdir()
    write_clip(clips, "talk", 64)
    build_cache(clips, small_model, tmp_path / "cache", progress=False)
    sizes = [f"model.{key}={value}" for key, value in vars(small_config.fmt).items()]
    run, _ = train(load_config(FMTTrainConfig, TINY, [*sizes, f"data.cache={tmp_path / 'cache'}", f"run.out_dir={tmp_path / 'run'}", "run.steps=2"]))
    model = load_float_model(export(run, tmp_path / "tuned.safetensors", base=small_model_dir), audio_encoder=small_model_dir / AUDIO_MODEL_NAME)
    assert model.config.fmt == small_config.fmt


def test_the_documented_commands(tmp_path, small_model_dir):
    """train_fmt and export as the README runs them, in fresh processes from the repository root."""
    import subprocess
    import sys

    cache = write_cache(tmp_path / "cache", motion_dim=16, stacked_dim=24)
    run = tmp_path / "run"
    commands = [
        ["-m", "training.train_fmt", "--config", str(TINY), f"data.cache={cache}", f"run.out_dir={run}", "run.steps=2"],
        ["-m", "training.train_fmt", "--config", str(TINY), f"data.cache={cache}", f"run.out_dir={run}", "run.steps=4"],  # resumes
        ["-m", "training.export", str(run), "--out", str(tmp_path / "fmt.safetensors")],
    ]
    for command in commands:
        done = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
    # the second command continued at step 3 (a restart would have logged steps 1 and 2 again)
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert (tmp_path / "fmt.safetensors").is_file()


def test_fine_tuning_starts_from_the_checkpoint(tmp_path, small_model_dir, small_config):
    cache = write_cache(tmp_path / "cache", motion_dim=64, stacked_dim=small_config.audio_feature_dim, frames=70)
    sizes = [f"model.{key}={value}" for key, value in vars(small_config.fmt).items()]
    base = load_float_model(small_model_dir)
    common = [f"data.cache={cache}", "run.steps=1", "optim.lr=1e-6", f"run.init_from={small_model_dir / 'float.pth'}"]
    _, tuned = train(load_config(FMTTrainConfig, TINY, [*sizes, *common, f"run.out_dir={tmp_path / 'run'}"]))
    # one small step away from the released weights, not from a fresh initialisation
    torch.testing.assert_close(tuned.fmt.blocks[0].attn.qkv.weight, base.fmt.blocks[0].attn.qkv.weight, rtol=0, atol=1e-4)
    torch.testing.assert_close(tuned.audio_projection[0].weight, base.audio_encoder.audio_projection[0].weight, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="has FMT sizes"):
        train(load_config(FMTTrainConfig, TINY, [f"data.cache={cache}", "model.motion_dim=64", *common[1:], f"run.out_dir={tmp_path / 'other'}"]))
