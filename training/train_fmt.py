"""Phase 2: train FLOAT's flow-matching transformer and audio projection on cached clips.

    python -m training.train_fmt --config training/configs/fmt_paper.yaml data.cache=cache run.out_dir=runs/fmt
    torchrun --nproc_per_node=8 -m training.train_fmt --config training/configs/fmt_paper.yaml ...

One CPU process, one GPU, or many GPUs with DDP: the batch in the config is the global batch, split between
the processes, and every sample's randomness is seeded by (seed, step, sample), so the result does not
depend on the number of processes. Run again with the same out_dir to resume exactly where it stopped.
The frozen networks (auto-encoder, wav2vec2, emotion model) ran when the cache was built.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from float_model.audio import audio_projection
from float_model.checkpoint import load_float_networks
from float_model.fmt import FlowMatchingTransformer

from . import distributed
from .config import FMTTrainConfig, config_to_dict, load_config, save_config
from .data import WindowSource
from .flow import Phase2Model, flow_matching_loss
from .state import EMA, MetricsLog, resume, save_checkpoint

log = logging.getLogger("training.train_fmt")


def initialize_fmt(fmt: FlowMatchingTransformer) -> None:
    """The official initialisation: Xavier-uniform linears with zero biases, N(0, 0.02) for the time MLP,
    and adaLN-Zero (every modulation and the output layer start at zero, so each block starts as identity)."""
    for module in fmt.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    for layer in fmt.t_embedder.mlp:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=0.02)
    for block in fmt.blocks:
        nn.init.zeros_(block.adaLN_modulation[-1].weight)
        nn.init.zeros_(block.adaLN_modulation[-1].bias)
    for layer in (fmt.decoder.adaLN_modulation[-1], fmt.decoder.linear):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


def build_model(config: FMTTrainConfig, audio_feature_dim: int) -> Phase2Model:
    """A new FMT and audio projection, or those of an existing FLOAT checkpoint (`run.init_from`) to fine-tune."""
    if config.run.init_from:
        networks = load_float_networks(config.run.init_from)
        if networks.config.fmt != config.model:
            raise ValueError(f"{config.run.init_from} has FMT sizes {networks.config.fmt}, the config asks for {config.model}: make model match it")
        model = Phase2Model(networks.fmt, networks.audio_encoder.audio_projection)
    else:
        model = Phase2Model(FlowMatchingTransformer(config.model), audio_projection(audio_feature_dim, config.model.audio_dim))
        initialize_fmt(model.fmt)
    if model.audio_projection[0].in_features != audio_feature_dim:
        raise ValueError(f"the cache holds {audio_feature_dim} stacked wav2vec2 features per frame, the audio projection takes {model.audio_projection[0].in_features}")
    return model.requires_grad_(True).train()


def train(config: FMTTrainConfig) -> tuple[Path, Phase2Model]:
    """Run (or resume) phase 2 to config.run.steps; returns the run's folder and this process's trained model."""
    processes = distributed.start()
    run, out = config.run, Path(config.run.out_dir)
    if run.batch_size % processes.world_size:
        raise ValueError(f"the global batch {run.batch_size} does not split evenly between {processes.world_size} processes")
    per_process = run.batch_size // processes.world_size
    context = config.model.num_prev_frames
    source = WindowSource(config.data.cache, config.model.sequence_length, context, config.flow, run.seed)
    if source.motion_dim != config.model.motion_dim or source.emotion_dim != config.model.emotion_dim:
        raise ValueError(f"the cache holds motion of width {source.motion_dim} and {source.emotion_dim} emotions; model says {config.model.motion_dim} and {config.model.emotion_dim}")

    torch.manual_seed(run.seed)  # the same initial weights in every process
    model = build_model(config, source.audio_feature_dim).to(processes.device)
    ema = EMA(model, config.optim.ema_decay)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=config.optim.lr, betas=config.optim.betas, weight_decay=config.optim.weight_decay)
    half = distributed.autocast_dtype(run.precision, processes.device)
    scaler = torch.amp.GradScaler(processes.device.type, enabled=half == torch.float16)

    checkpoints = out / "checkpoints"
    parts = {"model": model, "ema": ema, "optimizer": optimizer, "scaler": scaler}
    step = resume(checkpoints, parts)
    if processes.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(config, out / "config.yaml")
        metrics_log = MetricsLog(out, run.tensorboard)
        log.info("%s at step %d: %d processes x %d windows, %s", "resuming" if step else "starting", step, processes.world_size, per_process, processes.device)
    wrapped = DistributedDataParallel(model) if processes.world_size > 1 else model

    mine = range(processes.rank * per_process, (processes.rank + 1) * per_process)
    started = time.monotonic()
    while step < run.steps:
        for group in optimizer.param_groups:
            group["lr"] = config.optim.lr * min(1.0, (step + 1) / max(1, config.optim.warmup_steps))
        window = source.batch(step, mine).to(processes.device)
        with torch.autocast(processes.device.type, dtype=half or torch.float32, enabled=half is not None):
            velocity, target = wrapped(window, context, config.flow.sigma_min)
        loss, metrics = flow_matching_loss(velocity, target, config.flow.velocity_weight)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        metrics["grad_norm"] = torch.nn.utils.clip_grad_norm_(trainable, config.optim.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        ema.update(model)
        step += 1

        if step % run.log_every == 0 or step == run.steps:
            logged = {name: distributed.mean_over_processes(value).item() for name, value in metrics.items()}
            if processes.is_main:
                logged["steps_per_second"] = run.log_every / max(time.monotonic() - started, 1e-9)
                metrics_log.write(step, logged)
            started = time.monotonic()
        if step % run.checkpoint_every == 0 or step == run.steps:
            if processes.is_main:
                save_checkpoint(checkpoints, step, parts, config_to_dict(config), run.keep_checkpoints)
            distributed.barrier()
    del wrapped  # DDP's reducers go before the process group they use
    distributed.stop()
    return out, model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="FLOAT phase 2: train the flow-matching transformer on cached clips.")
    parser.add_argument("--config", help="a YAML file (training/configs/); defaults are the paper's")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. run.steps=1000 optim.lr=2e-5")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    train(load_config(FMTTrainConfig, args.config, args.overrides))


if __name__ == "__main__":
    main()
