"""Paste-back: the animated crop put back into the original picture, blended and colour-matched."""

import pytest
import torch
import torch.nn.functional as F

from float_model.crop_box import CropBox
from float_model.paste import feather_mask, paste_back, place_in_canvas


def random_images(count, height, width, seed=0, low=0.0, high=1.0):
    images = torch.rand(count, height, width, 3, generator=torch.Generator().manual_seed(seed))
    return low + (high - low) * images


def cut(originals, box):
    """The square of the box from (N, H, W, 3) images, black past their borders, as the face crop cuts it."""
    square = torch.zeros(originals.shape[0], box.size, box.size, 3)
    top, left = max(box.top, 0), max(box.left, 0)
    bottom, right = min(box.bottom, box.image_height), min(box.right, box.image_width)
    visible = originals[:, top:bottom, left:right]
    square[:, top - box.top : bottom - box.top, left - box.left : right - box.left] = visible
    return square


def resize(images, size):
    """(N, S, S, 3) -> (N, size, size, 3), the resampling paste_back is specified to use."""
    channels_first = images.permute(0, 3, 1, 2)
    resized = F.interpolate(channels_first, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.permute(0, 2, 3, 1)


def test_outside_the_mask_the_original_is_untouched():
    originals = random_images(2, 60, 80)
    box = CropBox(left=20, top=10, size=32, image_width=80, image_height=60)
    composite, mask = paste_back(random_images(2, 32, 32, seed=1), originals, box)
    assert composite.shape == (2, 60, 80, 3) and composite.dtype == torch.float32 and mask.shape == (60, 80)
    outside = mask == 0
    assert outside[:10].all() and outside[:, :20].all() and outside[42:].all() and outside[:, 52:].all()
    assert (mask[11:41, 21:51] > 0).all()
    assert torch.equal(composite[:, outside], originals[:, outside])
    assert 0 <= composite.min() and composite.max() <= 1


@pytest.mark.parametrize("left, top", [(20, 10), (-12, -7), (60, 40)])
@pytest.mark.parametrize("still", [True, False])
def test_cutting_and_pasting_back_gives_the_original(left, top, still):
    originals = random_images(1 if still else 3, 60, 80)
    box = CropBox(left, top, size=32, image_width=80, image_height=60)
    frames = cut(originals, box).expand(3, -1, -1, -1)
    composite, _ = paste_back(frames, originals, box, color_match=True)
    assert composite.shape == (3, 60, 80, 3)
    assert (composite - originals).abs().max() < 1 / 255


def test_a_resized_crop_is_pasted_resized_back():
    originals = random_images(2, 120, 150)
    box = CropBox(left=30, top=12, size=96, image_width=150, image_height=120)
    frames = resize(cut(originals, box), 64)
    composite, mask = paste_back(frames, originals, box, feather=0.2, color_match=False)
    expected = torch.zeros_like(originals)
    expected[:, 12:108, 30:126] = resize(frames, 96)
    inside = mask > 1 - 1e-6
    assert inside[12:108, 30:126].sum() > 30 * 30 and not inside[:12].any() and not inside[108:].any()
    torch.testing.assert_close(composite[:, inside], expected[:, inside], rtol=0, atol=1e-5)
    torch.testing.assert_close(composite[:, mask == 0], originals[:, mask == 0], rtol=0, atol=0)


def test_place_in_canvas_clips_to_the_image():
    box = CropBox(left=-2, top=3, size=4, image_width=5, image_height=6)
    patch = torch.arange(1.0, 17.0).view(4, 4)
    canvas = place_in_canvas(patch[None], box)
    assert canvas.shape == (1, 6, 5)
    assert torch.equal(canvas[0, 3:, :2], patch[:3, 2:])
    assert canvas.sum() == patch[:3, 2:].sum()
    with pytest.raises(ValueError, match=r"box's size \(4, 4\)"):
        place_in_canvas(torch.ones(3, 3), box)


def test_the_placed_mask_is_the_feather_mask_resized():
    box = CropBox(left=30, top=12, size=96, image_width=150, image_height=120)
    _, mask = paste_back(torch.rand(1, 64, 64, 3), torch.rand(1, 120, 150, 3), box, feather=0.2)
    resized = resize(feather_mask(64, 0.2)[None, :, :, None].expand(-1, -1, -1, 3), 96)[0, :, :, 0]
    torch.testing.assert_close(mask[12:108, 30:126], resized)


@pytest.mark.parametrize("left, top", [(-10, -6), (20, 15), (-5, 10)])
def test_a_box_over_the_image_border_touches_only_the_visible_part(left, top):
    originals = random_images(2, 30, 40)
    box = CropBox(left, top, size=32, image_width=40, image_height=30)
    frames = random_images(2, 32, 32, seed=1)
    composite, mask = paste_back(frames, originals, box, feather=0, color_match=False)
    rows = slice(max(top, 0), min(top + 32, 30))
    columns = slice(max(left, 0), min(left + 32, 40))
    window = torch.zeros(30, 40, dtype=torch.bool)
    window[rows, columns] = True
    assert torch.equal(mask, window.float())
    assert torch.equal(composite[:, ~window], originals[:, ~window])
    visible = frames[:, rows.start - top : rows.stop - top, columns.start - left : columns.stop - left]
    assert torch.equal(composite[:, rows, columns], visible)


def test_one_still_photo_or_one_original_per_frame():
    box = CropBox(left=8, top=8, size=16, image_width=32, image_height=32)
    frames = random_images(3, 16, 16, seed=1)
    still = random_images(1, 32, 32)
    composite, mask = paste_back(frames, still, box)
    assert composite.shape == (3, 32, 32, 3) and mask.shape == (32, 32)
    video = random_images(3, 32, 32, seed=2)
    composite, mask = paste_back(frames, video, box, feather=0.3)
    assert composite.shape == (3, 32, 32, 3) and mask.shape == (32, 32)
    torch.testing.assert_close(composite[:, mask == 0], video[:, mask == 0], rtol=0, atol=0)


def test_masks_per_frame():
    box = CropBox(left=8, top=8, size=16, image_width=32, image_height=32)
    frames = random_images(3, 16, 16, seed=1)
    originals = random_images(1, 32, 32)
    masks = torch.stack([torch.zeros(16, 16), torch.ones(16, 16), feather_mask(16, 0.25)])
    composite, placed = paste_back(frames, originals, box, mask=masks, color_match=False)
    assert composite.shape == (3, 32, 32, 3) and placed.shape == (3, 32, 32)
    assert torch.equal(composite[0], originals[0])
    assert torch.equal(composite[1, 8:24, 8:24], frames[1])
    assert torch.equal(placed[2, 8:24, 8:24], feather_mask(16, 0.25))
    _, placed = paste_back(frames, originals, box, mask=masks[2:])
    assert placed.shape == (1, 32, 32)
    _, placed = paste_back(frames, originals, box, mask=masks[2])
    assert placed.shape == (32, 32)


def test_the_originals_are_not_written_to():
    box = CropBox(left=8, top=8, size=16, image_width=32, image_height=32)
    originals = random_images(2, 32, 32)
    kept = originals.clone()
    paste_back(random_images(2, 16, 16, seed=1), originals, box)
    assert torch.equal(originals, kept)


def test_colour_matching_undoes_a_colour_shift():
    originals = random_images(2, 48, 48, low=0.1, high=0.9)
    box = CropBox(left=8, top=4, size=32, image_width=48, image_height=48)
    crop = cut(originals, box)
    shifted = crop * 0.5 + 0.2
    matched, _ = paste_back(shifted, originals, box, color_match=True)
    unmatched, _ = paste_back(shifted, originals, box, color_match=False)
    error = (matched - originals)[:, 4:36, 8:40].abs().mean()
    assert error < 0.005
    assert (unmatched - originals)[:, 4:36, 8:40].abs().mean() > 0.05


def test_colour_matching_is_one_transform_for_all_frames():
    # A face that brightens over the video keeps brightening: matching each frame alone would flatten it.
    originals = random_images(1, 48, 48, low=0.3, high=0.6)
    box = CropBox(left=8, top=4, size=32, image_width=48, image_height=48)
    crop = cut(originals, box)[0]
    frames = torch.stack([crop, crop + 0.1])
    composite, mask = paste_back(frames, originals, box, feather=0)
    difference = (composite[1] - composite[0])[mask == 1]
    # One transform: each channel steps by the same amount at every pixel (a little less than 0.1, as
    # the step itself widens the spread the face is scaled by).
    assert difference.std(dim=0).max() < 1e-5 and 0.05 < difference.min() and difference.max() < 0.1


def test_feather_mask_is_one_inside_and_zero_on_the_border():
    mask = feather_mask(33, 0.2)
    assert mask.shape == (33, 33) and mask.dtype == torch.float32
    assert mask[16, 16] == 1
    assert (mask[0] == 0).all() and (mask[-1] == 0).all() and (mask[:, 0] == 0).all() and (mask[:, -1] == 0).all()
    assert torch.equal(mask, mask.T) and torch.equal(mask, mask.flip(0)) and torch.equal(mask, mask.flip(1))
    for line in (mask[16, :17], mask.diagonal()[:17]):
        assert (line.diff() >= 0).all()
    assert ((mask > 0) & (mask < 1)).any()
    assert (mask[7:26, 7:26] == 1).all()  # the ramp is 0.2 * 33 = 6.6 pixels wide
    assert feather_mask(32, 0.5)[15:17, 15:17].eq(1).all()
    assert torch.equal(feather_mask(20, 0), torch.ones(20, 20))


GOOD = dict(frames=torch.rand(2, 16, 16, 3), originals=torch.rand(1, 30, 40, 3))
BOX = CropBox(left=4, top=4, size=16, image_width=40, image_height=30)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(originals=torch.rand(1, 40, 30, 3)), "originals are 30x40, but the crop box was found in a 40x30"),
        (dict(originals=torch.rand(3, 30, 40, 3)), "3 originals for 2 frames"),
        (dict(originals=torch.rand(30, 40, 3)), r"originals must be a tensor \(N, H, W, 3\)"),
        (dict(frames=torch.rand(2, 16, 12, 3)), "square"),
        (dict(frames=torch.rand(2, 3, 16, 16)), r"permute\(0, 2, 3, 1\)"),
        (dict(frames=torch.rand(16, 16, 3)), r"frames must be a tensor \(N, S, S, 3\)"),
        (dict(frames=torch.zeros(2, 16, 16, 3, dtype=torch.uint8)), "float"),
        (dict(mask=torch.rand(12, 12)), r"crop coordinates .*\(16, 16\)"),
        (dict(mask=torch.rand(3, 16, 16)), "3 masks for 2 frames"),
        (dict(mask=torch.rand(16, 16) * 2), r"mask must be float in \[0, 1\]"),
        (dict(feather=0.7), "feather"),
        (dict(box=CropBox(left=50, top=4, size=16, image_width=40, image_height=30)), "wholly outside"),
    ],
)
def test_bad_inputs_are_refused_with_a_hint(changes, message):
    arguments = dict(GOOD, box=BOX) | changes
    with pytest.raises(ValueError, match=message):
        paste_back(**arguments)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_result_on_the_gpu():
    box = CropBox(left=-6, top=10, size=48, image_width=80, image_height=60)
    frames, originals = random_images(3, 32, 32, seed=1), random_images(1, 60, 80)
    expected, expected_mask = paste_back(frames, originals, box)
    composite, mask = paste_back(frames.cuda(), originals.cuda(), box)
    assert composite.is_cuda and mask.is_cuda
    torch.testing.assert_close(composite.cpu(), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(mask.cpu(), expected_mask, rtol=0, atol=1e-6)
