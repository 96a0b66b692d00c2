"""write_video and frames_to_uint8: read back with PyAV, small frames so that every test encodes in milliseconds."""

import weakref
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

from float_model.media import MediaError
from float_model.video import frame_rate, frames_to_uint8, write_video

H, W = 48, 64


def colour_frames(count: int, start: int = 0) -> torch.Tensor:
    """(count, 3, H, W) float frames in [-1, 1]: each frame one flat colour, different per frame."""
    index = torch.arange(start, start + count, dtype=torch.float32)[:, None, None, None]
    channel = torch.tensor([1.0, 3.0, 7.0])[None, :, None, None]
    level = (index * channel * 17) % 256  # 0..255 per channel
    return (level / 127.5 - 1).expand(count, 3, H, W).contiguous()


def batches(count: int, batch_size: int = 8):
    for start in range(0, count, batch_size):
        yield colour_frames(min(batch_size, count - start), start)


def stereo_sine(seconds: float, rate: int) -> torch.Tensor:
    """Left channel a 440 Hz sine, right channel silent: (2, N)."""
    t = torch.arange(round(seconds * rate)) / rate
    left = 0.5 * torch.sin(2 * torch.pi * 440 * t)
    return torch.stack([left, torch.zeros_like(left)])


def read_back(path):
    """(video stream facts, decoded RGB frames, audio stream facts or None, decoded audio (C, N) or None)."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        facts = {"frames": video.frames, "rate": video.average_rate, "duration": video.duration * video.time_base}
        audio_facts = None
        if audio is not None:
            audio_facts = {"rate": audio.rate, "channels": audio.channels, "duration": audio.duration * audio.time_base}
        pictures, sound = [], []
        for packet in container.demux():
            for frame in packet.decode():
                if packet.stream.type == "video":
                    pictures.append(frame.to_ndarray(format="rgb24"))
                else:
                    sound.append(frame.to_ndarray())
    return facts, np.stack(pictures), audio_facts, (np.concatenate(sound, axis=1) if sound else None)


def stream_order(path) -> str:
    """The streams' packets in file order, "v" for video and "a" for audio, e.g. "vvavaav..."."""
    with av.open(str(path)) as container:
        packets = sorted((packet.pos, packet.stream.type[0]) for packet in container.demux() if packet.size)
    return "".join(kind for _, kind in packets)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------- frames_to_uint8


def test_frames_to_uint8_clamps_and_truncates():
    values = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0])
    frames = torch.cat([values[None, :3, None, None], values[None, 3:, None, None]], dim=3)  # (1, 3, 1, 2)
    out = frames_to_uint8(frames)
    assert out.dtype == torch.uint8 and out.shape == (1, 1, 2, 3)
    assert out[0, 0, 0].tolist() == [0, 0, 127]  # -1.5 clamps to 0; 0.0 -> 127.5 truncates to 127
    assert out[0, 0, 1].tolist() == [254, 255, 255]  # 0.999 -> 254.87 truncates; 2.0 clamps to 255


def test_frames_to_uint8_matches_the_official_formula_and_layout():
    frames = torch.randn(2, 3, 4, 6, generator=torch.Generator().manual_seed(0))
    official = ((frames.permute(0, 2, 3, 1).clamp(-1, 1) + 1) / 2 * 255).type(torch.ByteTensor)
    assert torch.equal(frames_to_uint8(frames), official)
    assert torch.equal(frames_to_uint8(frames.half()), frames_to_uint8(frames.half().float()))


def test_frames_to_uint8_rejects_nan_and_bad_shapes():
    with pytest.raises(MediaError, match="NaN"):
        frames_to_uint8(torch.full((1, 3, 2, 2), float("nan")))
    with pytest.raises(MediaError, match=r"\(N, 3, H, W\)"):
        frames_to_uint8(torch.zeros(1, 2, 2, 3))


# ------------------------------------------------------------------------------------------- write_video


def test_frame_count_rate_duration_and_colours(tmp_path):
    path = write_video(tmp_path / "out.mp4", batches(30), fps=25)
    assert path == tmp_path / "out.mp4" and leftovers(tmp_path) == ["out.mp4"]
    facts, pictures, audio_facts, _ = read_back(path)
    assert facts == {"frames": 30, "rate": 25, "duration": Fraction(30, 25)}
    assert audio_facts is None
    assert pictures.shape == (30, H, W, 3)
    # Flat colours survive H.264 at crf 18 to within a few levels, each channel in its place.
    expected = frames_to_uint8(colour_frames(30))[:, 0, 0].numpy().astype(int)
    assert np.abs(pictures[:, H // 2, W // 2].astype(int) - expected).max() <= 4


@pytest.mark.parametrize("fps, rate", [(24, 24), (30, 30), (50, 50), (60, 60), (29.97, Fraction(30000, 1001))])
def test_common_frame_rates(tmp_path, fps, rate):
    assert frame_rate(fps) == rate
    facts, *_ = read_back(write_video(tmp_path / "out.mp4", batches(12), fps=fps))
    assert facts == {"frames": 12, "rate": rate, "duration": 12 / Fraction(rate)}


def test_full_audio_is_muxed_with_its_own_rate(tmp_path):
    # 1.2 s of video, 2 s of audio: the audio is kept whole, as the official pipeline does.
    path = write_video(tmp_path / "out.mp4", batches(30), fps=25, audio=stereo_sine(2.0, 44100), sample_rate=44100)
    facts, _, audio_facts, sound = read_back(path)
    assert facts["frames"] == 30
    assert audio_facts["rate"] == 44100 and audio_facts["channels"] == 2
    assert abs(audio_facts["duration"] - 2) < 0.05
    assert abs(sound.shape[1] - 2 * 44100) <= 1024  # AAC pads to whole 1024-sample frames
    left, right = np.sqrt((sound[:, 4096:-4096] ** 2).mean(axis=1))
    assert abs(left - 0.5 / np.sqrt(2)) < 0.02 and right < 0.01
    # Interleaved: audio packets sit between the video packets, not all after them.
    order = stream_order(path)
    assert order.index("a") < order.rindex("v")


def test_mono_stays_mono_and_surround_is_mixed_to_stereo(tmp_path):
    mono = stereo_sine(0.5, 16000)[:1]
    _, _, facts, _ = read_back(write_video(tmp_path / "mono.mp4", batches(8), 25, mono, 16000))
    assert facts["channels"] == 1 and facts["rate"] == 16000

    surround = torch.zeros(6, 8000)
    surround[2] = mono[0]  # centre channel of 5.1 (FL FR FC LFE BL BR)
    _, _, facts, sound = read_back(write_video(tmp_path / "surround.mp4", batches(8), 25, surround, 16000))
    assert facts["channels"] == 2
    left, right = np.sqrt((sound[:, 2048:-2048] ** 2).mean(axis=1))
    assert left > 0.2 and abs(left - right) < 0.01  # the centre is heard equally in both


def test_sample_rate_aac_cannot_store_is_resampled(tmp_path):
    audio = stereo_sine(0.25, 192000)
    _, _, facts, _ = read_back(write_video(tmp_path / "out.mp4", batches(8), 25, audio, 192000))
    assert facts["rate"] == 96000 and abs(facts["duration"] - 0.25) < 0.03


def test_uint8_and_float_frames_give_the_same_file(tmp_path):
    as_uint8 = (frames_to_uint8(frames) for frames in batches(16))
    write_video(tmp_path / "float.mp4", batches(16), 25)
    write_video(tmp_path / "uint8.mp4", as_uint8, 25)
    assert (tmp_path / "float.mp4").read_bytes() == (tmp_path / "uint8.mp4").read_bytes()


def test_batches_are_encoded_as_they_arrive(tmp_path):
    # Two batches back must already be released when the next one is asked for: nothing is collected.
    released = []

    def watched():
        refs = []
        for batch in batches(40, batch_size=4):
            if len(refs) >= 2:
                released.append(refs[-2]() is None)
            refs.append(weakref.ref(batch))
            yield batch

    write_video(tmp_path / "out.mp4", watched(), 25)
    assert released and all(released)


@pytest.mark.parametrize("error", [RuntimeError("cancelled"), KeyboardInterrupt()])
def test_failure_inside_the_frames_leaves_nothing_behind(tmp_path, error):
    (tmp_path / "out.mp4").write_bytes(b"previous video")

    def interrupted():
        yield from batches(16)
        raise error

    with pytest.raises(type(error)) as raised:
        write_video(tmp_path / "out.mp4", interrupted(), 25, stereo_sine(1.0, 44100), 44100)
    assert raised.value is error
    assert leftovers(tmp_path) == ["out.mp4"] and (tmp_path / "out.mp4").read_bytes() == b"previous video"


def test_odd_size_is_a_clear_error(tmp_path):
    with pytest.raises(MediaError, match=r"even width and height, got 63x48"):
        write_video(tmp_path / "out.mp4", [torch.zeros(2, 3, 48, 63)], 25)
    assert leftovers(tmp_path) == []


def test_bad_arguments_are_clear_errors(tmp_path):
    frames = [torch.zeros(2, 3, H, W)]
    with pytest.raises(MediaError, match="name the output 'out.mp4'"):
        write_video(tmp_path / "out.avi", frames, 25)
    with pytest.raises(MediaError, match="fps must be a number from 1 to 1000"):
        write_video(tmp_path / "out.mp4", frames, 0)
    with pytest.raises(MediaError, match="crf must be"):
        write_video(tmp_path / "out.mp4", frames, 25, crf=60)
    with pytest.raises(MediaError, match="sample rate"):
        write_video(tmp_path / "out.mp4", frames, 25, audio=torch.zeros(1, 100))
    with pytest.raises(MediaError, match=r"pass audio\[None\]"):
        write_video(tmp_path / "out.mp4", frames, 25, audio=torch.zeros(100), sample_rate=16000)
    with pytest.raises(MediaError, match="no frames"):
        write_video(tmp_path / "out.mp4", [], 25)
    with pytest.raises(MediaError, match="one size"):
        write_video(tmp_path / "out.mp4", [torch.zeros(1, 3, H, W), torch.zeros(1, 3, H, W + 2)], 25)
    with pytest.raises(MediaError, match=r"\(n, 3, H, W\) float .* or \(n, H, W, 3\) uint8"):
        write_video(tmp_path / "out.mp4", [torch.zeros(3, H, W)], 25)
    assert leftovers(tmp_path) == []
