"""Phase 1 on a tiny configuration (32 px, random VGG weights) and synthetic clips: the reconstruction
loss falls, resume is exact, two processes agree, and the exported auto-encoder loads and decodes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from float_model import load_float_model
from float_model.config import AUDIO_MODEL_NAME
from float_model.video import write_video
from test_training_fmt import train_in_two_processes
from training.config import AETrainConfig, load_config
from training.export import export
from training.train_ae import train

TINY = Path(__file__).resolve().parent.parent / "training" / "configs" / "ae_tiny.yaml"
SIZE = 32


def face_frame(t: float, hue: float) -> tuple[np.ndarray, dict[str, list[float]]]:
    """A drawn face: a coloured disc that sways, two eyes that blink, a mouth that opens; and its boxes."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    cx, cy = 16 + 3 * math.sin(t), 16 + 2 * math.cos(0.7 * t)
    image = np.zeros((SIZE, SIZE, 3), dtype=np.float32) + 0.1
    face = (xx - cx) ** 2 + (yy - cy) ** 2 < 12**2
    image[face] = [0.8, 0.5 + 0.3 * hue, 0.4]
    eye_open = 0.5 + 1.5 * (math.sin(3 * t) > -0.6)
    mouth_open = 1 + 2.5 * abs(math.sin(2 * t))
    boxes = {}
    for name, ex in (("right_eye", cx - 5), ("left_eye", cx + 5)):
        image[(abs(xx - ex) < 2) & (abs(yy - (cy - 4)) < eye_open)] = 0.05
        boxes[name] = [ex - 4, cy - 8, ex + 4, cy]
    image[(abs(xx - cx) < 5) & (abs(yy - (cy + 5)) < mouth_open)] = [0.4, 0.05, 0.05]
    boxes["mouth"] = [cx - 7, cy + 1, cx + 7, cy + 9]
    return (image * 255).astype(np.uint8), boxes


def write_clips(folder: Path, clips: int = 3, frames: int = 30) -> Path:
    """Prepared clips as training.prepare writes them: <name>.mp4 at 25 fps and <name>.boxes.json."""
    folder.mkdir(parents=True, exist_ok=True)
    for clip in range(clips):
        pictures, boxes = zip(*(face_frame(i / 8 + clip, clip / clips) for i in range(frames)))
        write_video(folder / f"face{clip}.mp4", torch.from_numpy(np.stack(pictures)), 25, crf=10)
        (folder / f"face{clip}.boxes.json").write_text(json.dumps({"size": SIZE, "fps": 25, "source": "synthetic", "frames": list(boxes)}))
    return folder


def tiny_config(tmp_path: Path, *overrides: str) -> AETrainConfig:
    clips = tmp_path / "clips"
    if not clips.exists():
        write_clips(clips)
    return load_config(AETrainConfig, TINY, [f"data.clips={clips}", f"run.out_dir={tmp_path / 'run'}", *overrides])


def metric(run: Path, name: str) -> list[float]:
    return [json.loads(line)[name] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_reconstruction_improves_with_every_loss_on(tmp_path):
    run, _ = train(tiny_config(tmp_path))
    l1 = metric(run, "l1")
    assert len(l1) == 60 and all(math.isfinite(v) for v in metric(run, "loss"))
    first, last = sum(l1[:5]) / 5, sum(l1[-5:]) / 5
    assert last < 0.7 * first, f"L1 went from {first:.3f} to {last:.3f}"
    for term in ("perceptual", "component_perceptual", "eye_style", "lip_style", "critic"):
        assert all(math.isfinite(v) for v in metric(run, term)), term


def test_resume_is_exact(tmp_path):
    straight_dir, resumed_dir = tmp_path / "straight", tmp_path / "resumed"
    _, straight = train(tiny_config(tmp_path, "run.steps=6", "run.checkpoint_every=3", f"run.out_dir={straight_dir}"))
    train(tiny_config(tmp_path, "run.steps=3", "run.checkpoint_every=3", f"run.out_dir={resumed_dir}"))
    _, resumed = train(tiny_config(tmp_path, "run.steps=6", "run.checkpoint_every=3", f"run.out_dir={resumed_dir}"))
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    assert metric(straight_dir, "loss") == metric(resumed_dir, "loss")


def test_two_processes_end_with_identical_weights(tmp_path):
    config = tiny_config(tmp_path, "run.steps=3", f"run.out_dir={tmp_path / 'double'}")
    rank0, rank1 = train_in_two_processes(train, config, tmp_path)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    single = tiny_config(tmp_path, "run.steps=3", f"run.out_dir={tmp_path / 'single'}")
    train(single)
    torch.testing.assert_close(torch.tensor(metric(tmp_path / "double", "l1")), torch.tensor(metric(tmp_path / "single", "l1")), rtol=1e-4, atol=1e-6)


def test_exported_autoencoder_loads_and_decodes(tmp_path, small_model_dir):
    run, trained = train(tiny_config(tmp_path, "run.steps=2"))
    model = load_float_model(export(run, tmp_path / "float_ae.safetensors", base=small_model_dir), audio_encoder=small_model_dir / AUDIO_MODEL_NAME)
    shadow = torch.load(run / "checkpoints" / "step_000000002.pt", weights_only=True)["ema"]["shadow"]
    assert torch.equal(model.motion_autoencoder.dec.direction.weight, shadow["autoencoder.dec.direction.weight"])
    image = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    encoded = model.encode_image(image)
    frames = model.decode(encoded.identity_latent, encoded.features, model.motion_latent(encoded.motion_coefficients)[:, None])
    assert frames.shape == (1, 3, SIZE, SIZE) and torch.isfinite(frames).all()


def test_the_documented_commands(tmp_path, small_model_dir):
    """train_ae and export as the README runs them, in fresh processes from the repository root."""
    import subprocess
    import sys

    clips, run = write_clips(tmp_path / "clips"), tmp_path / "run"
    repo = TINY.parent.parent.parent
    for command in (
        ["-m", "training.train_ae", "--config", str(TINY), f"data.clips={clips}", f"run.out_dir={run}", "run.steps=2"],
        ["-m", "training.export", str(run), "--base", str(small_model_dir), "--out", str(tmp_path / "float_ae.safetensors")],
    ):
        done = subprocess.run([sys.executable, *command], cwd=repo, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
    assert load_float_model(tmp_path / "float_ae.safetensors", audio_encoder=small_model_dir / AUDIO_MODEL_NAME).config.motion_autoencoder.image_size == SIZE


def test_fine_tuning_starts_from_the_checkpoint(tmp_path, small_model_dir):
    base = load_float_model(small_model_dir).motion_autoencoder
    _, tuned = train(tiny_config(tmp_path, "run.steps=1", "optim.lr=1e-6", f"run.init_from={small_model_dir / 'float.pth'}"))
    torch.testing.assert_close(tuned.dec.direction.weight, base.dec.direction.weight, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="has auto-encoder sizes"):
        train(tiny_config(tmp_path, "run.steps=1", "model.motion_dim=4", f"run.init_from={small_model_dir / 'float.pth'}", f"run.out_dir={tmp_path / 'other'}"))
