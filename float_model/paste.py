"""Paste FLOAT's animated square crop back into the original photo, or into the frames of the original video.

    feather_mask(size, feather)                  a soft-edged square (size, size), 1 inside, 0 at the border
    place_in_canvas(patch, box)                  a (..., box.size, box.size) patch -> (..., H, W), zero elsewhere
    paste_back(frames, originals, box)           animated crops -> full-size frames, and the mask used

Images use ComfyUI's layout, (N, H, W, 3) float in [0, 1]; masks are (H, W) or (N, H, W) in [0, 1].
The CropBox says where the square was cut from the original (float_model/crop_box.py). Each frame is
resized back from S x S to the box's size and blended in with a mask that fades out towards the square's
edges, so no seam shows. Only the part of the box inside the image is ever read or written: the black
padding the crop had past the image's borders is dropped.

Colour matching corrects the small colour and brightness drift of the generated face: each RGB channel is
shifted and scaled so that its mean and standard deviation under the mask match the original's. The
statistics are gathered over all frames at once, so a whole video gets one transform and does not flicker.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .crop_box import CropBox

# A face channel flatter than one 8-bit level has no contrast to stretch; flooring its standard
# deviation stops colour matching from amplifying quantisation noise without bound.
STD_FLOOR = 1 / 255


def feather_mask(size: int, feather: float = 0.1, device: torch.device | str | None = None) -> Tensor:
    """A (size, size) float32 mask: 1 in the middle, falling to 0 at the border pixels over a band of
    `feather * size` pixels on each side, along a smoothstep (3t^2 - 2t^3: no kink where the ramp meets
    the flat middle). The corners are the product of the row and column ramps. feather 0: all ones."""
    if size < 1:
        raise ValueError(f"the mask size must be at least 1 pixel, got {size}")
    if not 0 <= feather <= 0.5:
        raise ValueError(f"feather must be from 0 (a hard edge) to 0.5 (the ramp reaches the centre), got {feather}")
    index = torch.arange(size, dtype=torch.float32, device=device)
    distance = torch.minimum(index, size - 1 - index)  # from the nearer edge: 0 on the border pixels
    # Capped so that the centre always reaches 1, even at feather 0.5; a square of 1 or 2 pixels is all border.
    band = min(feather * size, (size - 1) // 2)
    if band == 0:
        return torch.ones(size, size, device=device)
    t = (distance / band).clamp(max=1)
    ramp = t * t * (3 - 2 * t)
    return ramp[:, None] * ramp[None, :]


def place_in_canvas(patch: Tensor, box: CropBox) -> Tensor:
    """A patch (..., box.size, box.size) in the box's own pixels -> (..., image_height, image_width): the
    patch at (box.left, box.top), clipped to the image, zeros everywhere else."""
    if patch.dim() < 2 or patch.shape[-2:] != (box.size, box.size):
        raise ValueError(f"the patch must end in the box's size ({box.size}, {box.size}), got {tuple(patch.shape)}")
    image, crop = _visible_window(box)
    canvas = patch.new_zeros(*patch.shape[:-2], box.image_height, box.image_width)
    canvas[..., image[0], image[1]] = patch[..., crop[0], crop[1]]
    return canvas


def paste_back(
    frames: Tensor,
    originals: Tensor,
    box: CropBox,
    feather: float = 0.1,
    mask: Tensor | None = None,
    color_match: bool = True,
) -> tuple[Tensor, Tensor]:
    """Put animated crops back into the picture they were cut from.

    frames: (N, S, S, 3) in [0, 1], the animated S x S crops of the square `box`.
    originals: (N, H, W, 3), one original per frame, or (1, H, W, 3), one still photo for every frame;
        in [0, 1], with H, W = box.image_height, box.image_width.
    mask: in crop coordinates, (S, S) shared by all frames or (N, S, S) one per frame (or (1, S, S));
        None uses feather_mask(S, feather).
    color_match: match each channel's mean and std under the mask to the original's (one transform for
        all frames).

    Returns (composited (N, H, W, 3) float32 in [0, 1], the mask in image coordinates with the given
    mask's leading dimension: (H, W) for a shared mask, (N, H, W) for one per frame). Everything runs on
    the frames' device; the composite is mask * frame + (1 - mask) * original.
    """
    _check_frames(frames)
    count, size = frames.shape[0], frames.shape[1]
    device = frames.device
    _check_originals(originals, box, count)
    originals = originals.to(device, torch.float32)
    if mask is None:
        mask = feather_mask(size, feather, device)
    else:
        _check_mask(mask, size, count)
        mask = mask.to(device, torch.float32)

    image, crop = _visible_window(box)
    masks = mask if mask.dim() == 3 else mask[None]
    placed_masks = place_in_canvas(_resize_square(masks[..., None], box.size)[..., 0], box)
    weight = placed_masks[:, image[0], image[1], None]  # (1 or N, h, w, 1) over the visible window
    face = _resize_square(frames.to(torch.float32), box.size)[:, crop[0], crop[1]]
    background = originals[:, image[0], image[1]]
    if color_match:
        face = _match_colors(face, background, weight)

    # A fresh contiguous tensor: the caller's originals are never written to.
    composite = originals.expand(count, -1, -1, -1).clone(memory_format=torch.contiguous_format)
    composite[:, image[0], image[1]] = weight * face + (1 - weight) * background
    return composite, placed_masks if mask.dim() == 3 else placed_masks[0]


def _visible_window(box: CropBox) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """The part of the box inside the image, as (rows, columns) slices in image pixels and in the box's pixels."""
    top, bottom = max(box.top, 0), min(box.bottom, box.image_height)
    left, right = max(box.left, 0), min(box.right, box.image_width)
    if bottom <= top or right <= left:
        raise ValueError(
            f"the crop box {box} lies wholly outside its {box.image_width}x{box.image_height} image, "
            f"so there is nothing to paste: use the box the crop was cut with"
        )
    image = (slice(top, bottom), slice(left, right))
    crop = (slice(top - box.top, bottom - box.top), slice(left - box.left, right - box.left))
    return image, crop


def _resize_square(images: Tensor, size: int) -> Tensor:
    """(N, S, S, C) -> (N, size, size, C) by antialiased bilinear resampling; unchanged when size == S."""
    if images.shape[1] == size:
        return images
    channels_first = images.permute(0, 3, 1, 2)
    resized = F.interpolate(channels_first, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.permute(0, 2, 3, 1)


def _weighted_mean_std(images: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation (3,) of images (N, h, w, 3) over all frames and pixels,
    each pixel counted with its weight (N or 1, h, w, 1)."""
    weight = weight.expand(*images.shape[:-1], 1)
    # An all-zero mask gives zero statistics rather than NaN; the face is then blended in with weight 0.
    total = weight.sum().clamp_min(torch.finfo(torch.float32).tiny)
    mean = (images * weight).sum(dim=(0, 1, 2)) / total
    variance = ((images - mean) ** 2 * weight).sum(dim=(0, 1, 2)) / total
    return mean, variance.sqrt()


def _match_colors(face: Tensor, original: Tensor, weight: Tensor) -> Tensor:
    """Shift and scale each channel of face (N, h, w, 3) so that its mask-weighted mean and std over all
    frames equal those of original (N or 1, h, w, 3); clamped to [0, 1]. A still original counts once
    per frame, so frames equal to it get the identity transform."""
    face_mean, face_std = _weighted_mean_std(face, weight)
    original_mean, original_std = _weighted_mean_std(original.expand_as(face), weight)
    scale = original_std / face_std.clamp_min(STD_FLOOR)
    return ((face - face_mean) * scale + original_mean).clamp(0, 1)


def _check_frames(frames: Tensor) -> None:
    if not isinstance(frames, Tensor) or frames.dim() != 4 or frames.shape[3] != 3:
        shape = tuple(frames.shape) if isinstance(frames, Tensor) else type(frames).__name__
        hint = "; for channel-first frames (N, 3, S, S), pass frames.permute(0, 2, 3, 1)" if shape[1:2] == (3,) else ""
        raise ValueError(f"frames must be a tensor (N, S, S, 3) in ComfyUI's image layout, got {shape}{hint}")
    if not frames.is_floating_point():
        raise ValueError(f"frames must be float in [0, 1], got {frames.dtype}: convert uint8 with frames.float() / 255")
    if frames.shape[1] != frames.shape[2]:
        raise ValueError(
            f"frames must be the square S x S crops FLOAT renders, got {frames.shape[2]}x{frames.shape[1]} "
            f"(width x height): pass the generated frames as they came out"
        )


def _check_originals(originals: Tensor, box: CropBox, count: int) -> None:
    if not isinstance(originals, Tensor) or originals.dim() != 4 or originals.shape[3] != 3:
        shape = tuple(originals.shape) if isinstance(originals, Tensor) else type(originals).__name__
        raise ValueError(f"originals must be a tensor (N, H, W, 3) or (1, H, W, 3), ComfyUI's image layout; got {shape}")
    if not originals.is_floating_point():
        raise ValueError(f"originals must be float in [0, 1], got {originals.dtype}: convert uint8 with x.float() / 255")
    height, width = originals.shape[1:3]
    if (height, width) != (box.image_height, box.image_width):
        raise ValueError(
            f"the originals are {width}x{height}, but the crop box was found in a {box.image_width}x{box.image_height} "
            f"image: pass the picture the crop was cut from, at its own size"
        )
    if originals.shape[0] not in (1, count):
        raise ValueError(
            f"there are {originals.shape[0]} originals for {count} frames: pass one still image (1, H, W, 3) "
            f"or one original per frame"
        )


def _check_mask(mask: Tensor, size: int, count: int) -> None:
    if not isinstance(mask, Tensor) or mask.dim() not in (2, 3) or mask.shape[-2:] != (size, size):
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(
            f"the mask must be in crop coordinates like the frames, ({size}, {size}) or (N, {size}, {size}); "
            f"got {shape}"
        )
    if mask.dim() == 3 and mask.shape[0] not in (1, count):
        raise ValueError(f"there are {mask.shape[0]} masks for {count} frames: pass one shared mask or one per frame")
    if not mask.is_floating_point() or mask.min() < 0 or mask.max() > 1:
        raise ValueError("the mask must be float in [0, 1] (1 = generated face, 0 = original): clamp or rescale it")
