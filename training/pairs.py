"""Phase 1's training pairs: a source and a driving frame of the same prepared clip, with the driving
frame's eye and mouth boxes.

As in phase 2, each pair is drawn by its own generator seeded by (seed, step, position in the global batch),
so the pairs do not depend on the number of processes and a resumed run continues exactly. Frames are
decoded by seeking in the clip's mp4, in DataLoader workers.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import Dataset

from .clips import find_clips, read_frames_at
from .data import sample_generator

COMPONENTS = ("left_eye", "right_eye", "mouth")


def _frame_count(video: Path, boxes: dict | None) -> int:
    if boxes is not None:
        return len(boxes["frames"])
    with av.open(str(video)) as container:
        return container.streams.video[0].frames


class PairDataset(Dataset):
    """Items are keyed by (step, index); `StepBatches` yields the keys of one process's share of each step."""

    def __init__(self, clips_dir: str | Path, image_size: int, seed: int, need_boxes: bool):
        self.clips = []
        for clip in find_clips(clips_dir):
            boxes_path = clip.video.with_name(f"{clip.name}.boxes.json")
            if need_boxes and not boxes_path.is_file():
                raise FileNotFoundError(f"{boxes_path} is missing: the component losses need the eye and mouth boxes that training.prepare writes")
            boxes = json.loads(boxes_path.read_text()) if boxes_path.is_file() else None
            frames = _frame_count(clip.video, boxes)
            if frames >= 2:
                self.clips.append((clip.video, frames, boxes))
        if not self.clips:
            raise ValueError(f"no clip in {clips_dir} has two frames to pair")
        self.image_size, self.seed = image_size, seed
        self.weights = torch.tensor([frames for _, frames, _ in self.clips], dtype=torch.float64)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        step, index = key
        generator = sample_generator(self.seed, step, index)
        clip = int(torch.multinomial(self.weights, 1, generator=generator))
        video, frames, boxes = self.clips[clip]
        source, driving = (int(i) for i in torch.randint(frames, (2,), generator=generator))
        pictures = read_frames_at(video, [source, driving], self.image_size)
        images = torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).float() / 127.5 - 1
        item = {"source": images[0], "driving": images[1]}
        if boxes is not None:
            scale = self.image_size / boxes["size"]
            item["boxes"] = torch.tensor([boxes["frames"][driving][name] for name in COMPONENTS], dtype=torch.float32) * scale
        return item


class StepBatches(torch.utils.data.Sampler):
    """The keys of this process's share of every global batch, from `start_step` on."""

    def __init__(self, start_step: int, steps: int, indices: range):
        self.start_step, self.steps, self.indices = start_step, steps, indices

    def __iter__(self):
        for step in range(self.start_step, self.steps):
            yield [(step, index) for index in self.indices]

    def __len__(self) -> int:
        return self.steps - self.start_step
