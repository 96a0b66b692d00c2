"""Phase 1: train FLOAT's motion auto-encoder on prepared clips.

    python -m training.train_ae --config training/configs/ae_paper.yaml data.clips=clips run.out_dir=runs/ae
    torchrun --nproc_per_node=8 -m training.train_ae --config training/configs/ae_paper.yaml ...

A driving frame is rebuilt from a source frame of the same clip: the source's identity latent and feature
pyramid, plus the driving frame's motion (its coefficients along the learned motion basis). Losses as in
the paper: L1, VGG-19 perceptual, facial-component perceptual, and adversarial terms from a 2-scale face
critic and eye and lip critics with Gram-matrix style matching. Processes, seeding, checkpoints and resume
work as in phase 2 (train_fmt.py).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from float_model.checkpoint import load_float_networks
from float_model.motion_autoencoder import MotionAutoEncoder

from . import distributed
from .config import AETrainConfig, config_to_dict, load_config, save_config
from .losses import (
    ComponentDiscriminator,
    TwoScaleDiscriminator,
    component_perceptual_loss,
    crop_boxes,
    critic_adversarial,
    generator_adversarial,
    load_vgg19,
    perceptual_loss,
    style_loss,
)
from .pairs import PairDataset, StepBatches
from .state import EMA, MetricsLog, resume, save_checkpoint

log = logging.getLogger("training.train_ae")


class Reconstruction(nn.Module):
    """The auto-encoder as phase 1 runs it: driving frame rebuilt from the source's appearance and the
    driving frame's motion. One forward, so that DDP sees every parameter it must synchronise."""

    def __init__(self, autoencoder: MotionAutoEncoder):
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, source: Tensor, driving: Tensor) -> Tensor:
        appearance = self.autoencoder.encode(source)
        motion = self.autoencoder.dec.direction(self.autoencoder.encode(driving).motion_coefficients)
        return self.autoencoder.decode(appearance.identity_latent + motion, appearance.features)


class Critics(nn.Module):
    """The face discriminator, and the eye and lip ones when the component losses are on; forward gives their
    logits and the component features."""

    def __init__(self, image_size: int, eye_crop: int, lip_crop: int, components: bool):
        super().__init__()
        self.face = TwoScaleDiscriminator(levels=min(4, max(1, image_size.bit_length() - 5)))
        self.eye = ComponentDiscriminator() if components else None
        self.lip = ComponentDiscriminator() if components else None
        self.eye_crop = max(8, round(eye_crop * image_size / 512))
        self.lip_crop = max(8, round(lip_crop * image_size / 512))

    def forward(self, image: Tensor, boxes: Tensor | None) -> dict[str, object]:
        out: dict[str, object] = {"face": self.face(image)}
        if boxes is not None:
            eyes = crop_boxes(image.repeat_interleave(2, dim=0), boxes[:, :2].reshape(-1, 4), self.eye_crop)  # both eyes, one critic
            out["eye"] = self.eye(eyes)
            out["lip"] = self.lip(crop_boxes(image, boxes[:, 2], self.lip_crop))
        return out

    def critic_loss(self, real: Tensor, fake: Tensor, boxes: Tensor | None) -> Tensor:
        real_out, fake_out = self(real, boxes), self(fake, boxes)
        loss = critic_adversarial(real_out["face"], fake_out["face"])
        if boxes is not None:
            loss = loss + critic_adversarial(real_out["eye"][0], fake_out["eye"][0]) + critic_adversarial(real_out["lip"][0], fake_out["lip"][0])
        return loss


class CriticStep(nn.Module):
    """The critics' loss as one forward, so that DDP synchronises their gradients."""

    def __init__(self, critics: Critics):
        super().__init__()
        self.critics = critics

    def forward(self, real: Tensor, fake: Tensor, boxes: Tensor | None) -> Tensor:
        return self.critics.critic_loss(real, fake, boxes)


def generator_losses(config: AETrainConfig, vgg: nn.Module, critics: Critics, fake: Tensor, real: Tensor, boxes: Tensor | None) -> dict[str, Tensor]:
    """Every term of the auto-encoder's loss (unweighted) and, under "loss", their weighted sum."""
    weights = config.loss
    terms = {"l1": (fake.float() - real.float()).abs().mean(), "perceptual": perceptual_loss(vgg, fake, real)}
    fake_out = critics(fake, boxes)
    terms["adversarial"] = generator_adversarial(fake_out["face"])
    if boxes is not None:
        with torch.no_grad():
            real_out = critics(real, boxes)
        terms["component_perceptual"] = component_perceptual_loss(vgg, fake, real, boxes)
        terms["eye_adversarial"] = generator_adversarial(fake_out["eye"][0])
        terms["eye_style"] = style_loss(fake_out["eye"][1], real_out["eye"][1])
        terms["lip_adversarial"] = generator_adversarial(fake_out["lip"][0])
        terms["lip_style"] = style_loss(fake_out["lip"][1], real_out["lip"][1])
    terms["loss"] = sum(getattr(weights, name) * value for name, value in terms.items())
    return terms


def build_autoencoder(config: AETrainConfig) -> MotionAutoEncoder:
    """A new auto-encoder, or the one of an existing FLOAT checkpoint (`run.init_from`) to fine-tune."""
    if not config.run.init_from:
        return MotionAutoEncoder(config.model)
    autoencoder = load_float_networks(config.run.init_from).motion_autoencoder
    if autoencoder.config != config.model:
        raise ValueError(f"{config.run.init_from} has auto-encoder sizes {autoencoder.config}, the config asks for {config.model}")
    return autoencoder


def train(config: AETrainConfig) -> tuple[Path, MotionAutoEncoder]:
    """Run (or resume) phase 1 to config.run.steps; returns the run's folder and this process's auto-encoder."""
    processes = distributed.start()
    run, out, weights = config.run, Path(config.run.out_dir), config.loss
    if run.batch_size % processes.world_size:
        raise ValueError(f"the global batch {run.batch_size} does not split evenly between {processes.world_size} processes")
    per_process = run.batch_size // processes.world_size
    use_components = any(getattr(weights, name) for name in ("component_perceptual", "eye_adversarial", "eye_style", "lip_adversarial", "lip_style"))
    pairs = PairDataset(config.data.clips, config.model.image_size, run.seed, need_boxes=use_components)

    torch.manual_seed(run.seed)  # the same initial weights in every process
    model = Reconstruction(build_autoencoder(config)).to(processes.device).requires_grad_(True).train()
    critics = Critics(config.model.image_size, weights.eye_crop, weights.lip_crop, use_components).to(processes.device).train()
    vgg = load_vgg19(weights.vgg).to(processes.device)
    ema = EMA(model, config.optim.ema_decay)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr, betas=config.optim.betas)
    critic_optimizer = torch.optim.Adam(critics.parameters(), lr=config.optim.lr, betas=config.optim.betas)
    half = distributed.autocast_dtype(run.precision, processes.device)
    scaler = torch.amp.GradScaler(processes.device.type, enabled=half == torch.float16)

    checkpoints = out / "checkpoints"
    parts = {"model": model, "critics": critics, "ema": ema, "optimizer": optimizer, "critic_optimizer": critic_optimizer, "scaler": scaler}
    step = resume(checkpoints, parts)
    if processes.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.yaml")
        metrics_log = MetricsLog(out, run.tensorboard)
        log.info("%s at step %d: %d processes x %d pairs, %s", "resuming" if step else "starting", step, processes.world_size, per_process, processes.device)
    many = processes.world_size > 1
    wrapped = DistributedDataParallel(model) if many else model
    critic_step = DistributedDataParallel(CriticStep(critics)) if many else CriticStep(critics)

    mine = range(processes.rank * per_process, (processes.rank + 1) * per_process)
    batches = DataLoader(pairs, batch_sampler=StepBatches(step, run.steps, mine), num_workers=config.data.num_workers)
    autocast = torch.autocast(processes.device.type, dtype=half or torch.float32, enabled=half is not None)
    started = time.monotonic()
    for batch in batches:
        source, driving = batch["source"].to(processes.device), batch["driving"].to(processes.device)
        boxes = batch["boxes"].to(processes.device) if use_components else None

        # The auto-encoder's step, the critics frozen.
        critics.requires_grad_(False)
        with autocast:
            fake = wrapped(source, driving)
            terms = generator_losses(config, vgg, critics, fake, driving, boxes)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(terms["loss"]).backward()
        if config.optim.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
        scaler.step(optimizer)

        # The critics' step, on the reconstruction as it was.
        critics.requires_grad_(True)
        with autocast:
            terms["critic"] = critic_step(driving, fake.detach(), boxes)
        critic_optimizer.zero_grad(set_to_none=True)
        scaler.scale(terms["critic"]).backward()
        scaler.step(critic_optimizer)
        scaler.update()
        ema.update(model)
        step += 1

        if step % run.log_every == 0 or step == run.steps:
            logged = {name: distributed.mean_over_processes(value.detach().float()).item() for name, value in terms.items()}
            if processes.is_main:
                logged["steps_per_second"] = run.log_every / max(time.monotonic() - started, 1e-9)
                metrics_log.write(step, logged)
            started = time.monotonic()
        if step % run.checkpoint_every == 0 or step == run.steps:
            if processes.is_main:
                save_checkpoint(checkpoints, step, parts, config_to_dict(config), run.keep_checkpoints)
            distributed.barrier()
    del wrapped, critic_step  # DDP's reducers go before the process group they use
    distributed.stop()
    return out, model.autoencoder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="FLOAT phase 1: train the motion auto-encoder on prepared clips.")
    parser.add_argument("--config", help="a YAML file (training/configs/); defaults are the paper's")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. run.steps=1000 loss.vgg=vgg19.pth")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    train(load_config(AETrainConfig, args.config, args.overrides))


if __name__ == "__main__":
    main()
