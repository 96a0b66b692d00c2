"""load_image and load_audio on files written here: every Pillow mode users meet, and audio in several codecs."""

import wave
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image

from float_model.media import MediaError, load_audio, load_image

# ---------------------------------------------------------------------------------------------- images


def test_rgb_png_round_trips_exactly(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    assert image.shape == (6, 5, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, pixels)


def test_rgba_is_composited_over_the_background(tmp_path):
    pixels = np.zeros((2, 2, 4), dtype=np.uint8)
    pixels[0, 0] = (255, 0, 0, 255)  # opaque red
    pixels[0, 1] = (255, 0, 0, 128)  # half-transparent red
    pixels[1, :] = (0, 255, 0, 0)  # fully transparent green
    Image.fromarray(pixels, mode="RGBA").save(tmp_path / "a.png")

    black = load_image(tmp_path / "a.png").astype(int)
    assert black[0, 0].tolist() == [255, 0, 0]
    assert abs(black[0, 1, 0] - 128) <= 1 and black[0, 1, 1:].tolist() == [0, 0]
    assert black[1].tolist() == [[0, 0, 0]] * 2

    white = load_image(tmp_path / "a.png", background=(255, 255, 255)).astype(int)
    assert white[0, 0].tolist() == [255, 0, 0]
    assert white[0, 1, 0] == 255 and all(abs(v - 127) <= 1 for v in white[0, 1, 1:])
    assert white[1].tolist() == [[255, 255, 255]] * 2


def test_grey_with_alpha(tmp_path):
    Image.fromarray(np.array([[[200, 255], [200, 0]]], dtype=np.uint8), mode="LA").save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png", background=(10, 20, 30))
    assert image.shape == (1, 2, 3)
    assert image[0, 0].tolist() == [200, 200, 200] and image[0, 1].tolist() == [10, 20, 30]


def test_grey_becomes_three_equal_channels(tmp_path):
    Image.fromarray(np.array([[0, 100, 255]], dtype=np.uint8)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png").tolist() == [[[0, 0, 0], [100, 100, 100], [255, 255, 255]]]


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    grey = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode.startswith("I")
    assert load_image(tmp_path / "a.png").tolist() == [[[0, 0, 0], [100, 100, 100], [255, 255, 255]]]


def test_palette_transparency_shows_the_background(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * (3 * 254))
    image.putdata([0, 1])
    image.save(tmp_path / "a.png", transparency=1)
    assert load_image(tmp_path / "a.png", background=(0, 255, 0)).tolist() == [[[255, 0, 0], [0, 255, 0]]]


def test_cmyk_becomes_rgb(tmp_path):
    cmyk = np.array([[[0, 0, 0, 0], [0, 255, 255, 0]]], dtype=np.uint8)  # white, red
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "a.tif")
    assert load_image(tmp_path / "a.tif").tolist() == [[[255, 255, 255], [255, 0, 0]]]


def test_exif_orientation_is_applied(tmp_path):
    # Stored 4 wide, 2 high: left half red, right half blue. Orientation 6 means "rotate 90 degrees
    # clockwise to display", which puts the left column on top.
    pixels = np.zeros((2, 4, 3), dtype=np.uint8)
    pixels[:, :2] = (255, 0, 0)
    pixels[:, 2:] = (0, 0, 255)
    stored = Image.fromarray(pixels)
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "a.png", exif=exif)
    image = load_image(tmp_path / "a.png")
    assert image.shape == (4, 2, 3)
    assert (image[:2] == (255, 0, 0)).all() and (image[2:] == (0, 0, 255)).all()


def test_image_errors_name_the_file(tmp_path):
    with pytest.raises(MediaError, match="file not found: .*missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(MediaError, match="is a folder"):
        load_image(tmp_path)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(MediaError, match=r"cannot read .*notes\.png as an image"):
        load_image(tmp_path / "notes.png")
    Image.new("RGB", (1, 1)).save(tmp_path / "a.png")
    with pytest.raises(MediaError, match="background must be"):
        load_image(tmp_path / "a.png", background=(0, 0, 300))


# ----------------------------------------------------------------------------------------------- audio

RATE = 44100


def sine(seconds: float, rate: int, frequency: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def left_sine_right_silence(seconds: float, rate: int) -> np.ndarray:
    left = sine(seconds, rate)
    return np.stack([left, np.zeros_like(left)])


def write_wav_s16(path, samples: np.ndarray, rate: int) -> None:
    """samples (C, N), float in [-1, 1] or int16 -> 16-bit PCM wav (a packed format in PyAV)."""
    pcm = samples if samples.dtype == np.int16 else np.round(samples * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as file:
        file.setnchannels(samples.shape[0])
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(pcm.T.astype("<i2").tobytes())  # interleaved: one sample of each channel in turn


def write_with_pyav(path, samples: np.ndarray, rate: int, codec: str, video: bool = False) -> None:
    """samples (C, N) float32 -> a file in `codec`, optionally with a short video stream first."""
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    with av.open(str(path), "w") as container:
        if video:
            picture = container.add_stream("libx264", rate=25)
            picture.width, picture.height = 16, 16
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if video:
            for i in range(3):
                still = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), dtype=np.uint8), format="rgb24")
                still.pts = i
                container.mux(picture.encode(still))
            container.mux(picture.encode(None))


def rms(x) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def test_stereo_wav_keeps_channel_order_and_values(tmp_path):
    samples = left_sine_right_silence(0.5, RATE)
    write_wav_s16(tmp_path / "a.wav", samples, RATE)
    waveform, rate = load_audio(tmp_path / "a.wav")
    assert rate == RATE
    assert waveform.dtype == torch.float32 and waveform.shape == (2, samples.shape[1])
    # s16 -> float is value / 32768.
    np.testing.assert_allclose(waveform[0].numpy(), np.round(samples[0] * 32767) / 32768, atol=1e-7)
    assert (waveform[1] == 0).all()


def test_full_scale_pcm_stays_in_range(tmp_path):
    write_wav_s16(tmp_path / "a.wav", np.array([[-32768, 32767, 0]], dtype=np.int16), 8000)
    waveform, _ = load_audio(tmp_path / "a.wav")
    assert waveform.tolist() == [[-1.0, 32767 / 32768, 0.0]]


def test_surround_wav_keeps_all_channels(tmp_path):
    samples = np.zeros((6, 800), dtype=np.float32)
    samples[2] = sine(800 / 16000, 16000)  # the centre channel of 5.1
    write_wav_s16(tmp_path / "a.wav", samples, 16000)
    waveform, rate = load_audio(tmp_path / "a.wav")
    assert rate == 16000 and waveform.shape == (6, 800)
    assert [rms(channel) > 0.1 for channel in waveform] == [False, False, True, False, False, False]


def test_mono_flac_at_48k_is_lossless(tmp_path):
    samples = sine(0.5, 48000)[None]
    write_with_pyav(tmp_path / "a.flac", samples, 48000, "flac")
    waveform, rate = load_audio(tmp_path / "a.flac")
    assert rate == 48000 and waveform.shape == (1, 24000)
    # FLAC stores 16 bits here (PyAV picks s16 for it).
    np.testing.assert_allclose(waveform.numpy(), samples, atol=1 / 16384)


@pytest.mark.parametrize(
    "name, codec, rate, frame_size",
    [("a.mp3", "libmp3lame", 48000, 1152), ("a.m4a", "aac", 44100, 1024), ("a.ogg", "libopus", 48000, 960)],
)
def test_lossy_stereo_keeps_rate_duration_and_channel_order(tmp_path, name, codec, rate, frame_size):
    samples = left_sine_right_silence(0.5, rate)
    write_with_pyav(tmp_path / name, samples, rate, codec)
    waveform, got_rate = load_audio(tmp_path / name)
    assert got_rate == rate and waveform.dtype == torch.float32 and waveform.shape[0] == 2
    assert abs(waveform.shape[1] - samples.shape[1]) <= frame_size  # codec padding at most one frame
    assert waveform.abs().max() <= 1.0
    assert abs(rms(waveform[0]) - rms(samples[0])) < 0.05 * rms(samples[0])
    assert rms(waveform[1]) < 0.05 * rms(waveform[0])


def test_audio_track_of_a_video_file(tmp_path):
    write_with_pyav(tmp_path / "clip.mp4", sine(0.3, RATE)[None], RATE, "aac", video=True)
    waveform, rate = load_audio(tmp_path / "clip.mp4")
    assert rate == RATE and waveform.shape[0] == 1
    assert abs(waveform.shape[1] - round(0.3 * RATE)) <= 1024


def test_audio_errors_name_the_file(tmp_path):
    with pytest.raises(MediaError, match="file not found: .*missing.wav"):
        load_audio(tmp_path / "missing.wav")
    (tmp_path / "notes.wav").write_text("not audio at all")
    with pytest.raises(MediaError, match=r"cannot read audio from .*notes\.wav"):
        load_audio(tmp_path / "notes.wav")
    Image.new("RGB", (4, 4)).save(tmp_path / "still.png")
    with pytest.raises(MediaError, match=r"still\.png has no audio stream"):
        load_audio(tmp_path / "still.png")
    write_wav_s16(tmp_path / "empty.wav", np.zeros((1, 0)), RATE)
    with pytest.raises(MediaError, match=r"empty\.wav holds no samples"):
        load_audio(tmp_path / "empty.wav")
