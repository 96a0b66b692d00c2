"""Phase 2's training windows, read from the cache that `training.cache_fmt` builds.

Every sample is drawn from its own generator, seeded by (seed, step, position in the global batch): which
clip, where the window starts, the reference frame, the flow time, the noise and the condition dropout.
So the windows do not depend on how many processes share the batch, a resumed run draws exactly what
the uninterrupted run would have, and there is no data-loader position to save.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import safetensors
import torch

from .cache_fmt import CacheIndex
from .config import FlowConfig
from .flow import Window, keep_mask, sample_time


def sample_generator(seed: int, step: int, index: int) -> torch.Generator:
    """The generator of one sample: a hash of (seed, step, index), so nearby seeds give unrelated streams."""
    state = np.random.SeedSequence([seed, step, index]).generate_state(2, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0] >> np.uint64(1)))


class WindowSource:
    """Windows of `window` consecutive frames from the cached clips long enough to hold one."""

    def __init__(self, cache: str | Path, window: int, context: int, flow: FlowConfig, seed: int):
        index = CacheIndex.load(cache)
        self.clips = [(clip.path, clip.frames) for clip in index.clips if clip.frames >= window]
        if not self.clips:
            raise ValueError(f"no cached clip in {cache} has the {window} frames of one training window ({window / 25:.1f} s)")
        self.window, self.context, self.flow, self.seed = window, context, flow, seed
        self.motion_dim, self.audio_feature_dim, self.emotion_dim = index.motion_dim, index.audio_feature_dim, index.emotion_dim
        # Clips are picked in proportion to their number of windows, so every window is equally likely.
        self.weights = torch.tensor([frames - window + 1 for _, frames in self.clips], dtype=torch.float64)
        self._files: dict[Path, object] = {}

    def _open(self, path: Path):
        if path not in self._files:  # memory-mapped: only the frames read are loaded
            self._files[path] = safetensors.safe_open(str(path), framework="pt")
        return self._files[path]

    def sample(self, step: int, index: int) -> dict[str, torch.Tensor]:
        generator = sample_generator(self.seed, step, index)
        clip = int(torch.multinomial(self.weights, 1, generator=generator))
        path, frames = self.clips[clip]
        start = int(torch.randint(frames - self.window + 1, (), generator=generator))
        reference = int(torch.randint(frames, (), generator=generator))
        file = self._open(path)
        motion = file.get_slice("motion")
        return {
            "motion": motion[start : start + self.window].float(),
            "audio": file.get_slice("audio")[start : start + self.window],
            "reference": motion[reference : reference + 1][0].float(),
            "emotion": file.get_tensor("emotion").float(),
            "time": sample_time(generator, self.flow.time_sampler),
            "noise": torch.randn(self.window - self.context, self.motion_dim, generator=generator),
            "keep": keep_mask(generator, self.flow),
        }

    def batch(self, step: int, indices: range) -> Window:
        """The windows at these positions of the global batch of `step`."""
        samples = [self.sample(step, index) for index in indices]
        return Window(**{name: torch.stack([s[name] for s in samples]) for name in samples[0]})
