"""Evaluation (training.evaluate, training.metrics) and test-split rendering (training.render_test).

No real metric weights exist here, so the metrics' networks run with random weights that the tests save
in the files' real formats (a state dict under pytorch-fid's key names, a TorchScript I3D, LPIPS' two
files, a safetensors SyncNet): that proves the loading and computation paths, not the numbers.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest
import safetensors.torch
import torch
from torch import Tensor, nn

from float_model.media import MediaError
from float_model.video import write_video
from training.evaluate import describe_weights, evaluate
from training.evaluate import main as evaluate_main
from training.metrics import METRICS, WEIGHTS_ENV, NotEnoughData, pair_videos, read_frames
from training.metrics.csim import TEMPLATE, FaceAligner, identity_similarity, similarity_transform
from training.metrics.fid import FIDInception
from training.metrics.frechet import feature_frechet_distance, frechet_distance
from training.metrics.lpips import CHANNELS, AlexNetFeatures
from training.metrics.lse import SyncNet, dct_matrix, mfcc, sync_scores
from training.render_test import main as render_main

# --- Synthetic clips -------------------------------------------------------------------------------------


def write_wav(path: Path, seconds: float, seed: int, rate: int = 16_000) -> None:
    """A 16-bit mono wav: a tone whose loudness comes and goes, like syllables."""
    t = np.arange(int(seconds * rate)) / rate
    envelope = np.abs(np.sin(2 * np.pi * (2 + seed) * t))
    samples = (0.3 * envelope * np.sin(2 * np.pi * (180 + 40 * seed) * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(samples.tobytes())


def write_clip(folder: Path, name: str, frames: int, size: int, seed: int, wav: bool = True) -> Path:
    """A 25 fps square clip: a bright disc ("face") drifting over a coloured background, and its speech."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    background = rng.integers(30, 200, size=3)
    y, x = np.mgrid[:size, :size]
    video = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        cx, cy = size / 2 + size / 8 * math.sin(t / 5 + seed), size / 2 + size / 10 * math.cos(t / 7)
        disc = (x - cx) ** 2 + (y - cy) ** 2 < (size / 4) ** 2
        video[t] = np.where(disc[..., None], [230, 190, 160], background).astype(np.uint8)
    write_video(folder / f"{name}.mp4", torch.from_numpy(video), 25)
    if wav:
        write_wav(folder / f"{name}.wav", frames / 25, seed)
    return folder / f"{name}.mp4"


def copy_folder(source: Path, destination: Path, pattern: str = "*.mp4") -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    for path in source.glob(pattern):
        shutil.copy(path, destination / path.name)
    return destination


# --- Fréchet distance ------------------------------------------------------------------------------------


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    generator = torch.Generator().manual_seed(0)
    mean1, mean2 = (torch.randn(6, generator=generator, dtype=torch.float64) for _ in range(2))
    var1, var2 = (torch.rand(6, generator=generator, dtype=torch.float64) + 0.1 for _ in range(2))
    expected = (mean1 - mean2).pow(2).sum() + (var1.sqrt() - var2.sqrt()).pow(2).sum()
    assert frechet_distance(mean1, torch.diag(var1), mean2, torch.diag(var2)) == pytest.approx(float(expected), rel=1e-10)


def test_frechet_distance_of_covariances_sharing_eigenvectors_is_the_closed_form():
    generator = torch.Generator().manual_seed(1)
    rotation, _ = torch.linalg.qr(torch.randn(5, 5, generator=generator, dtype=torch.float64))
    eig1, eig2 = torch.rand(5, generator=generator, dtype=torch.float64), torch.rand(5, generator=generator, dtype=torch.float64)
    cov1, cov2 = rotation @ torch.diag(eig1) @ rotation.T, rotation @ torch.diag(eig2) @ rotation.T
    zero = torch.zeros(5)
    expected = float((eig1.sqrt() - eig2.sqrt()).pow(2).sum())
    assert frechet_distance(zero, cov1, zero, cov2) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("counts", [(300, 200), (12, 9), (12, 300)])
def test_distance_from_features_equals_distance_from_their_statistics(counts):
    """Both factorisations (samples when few, covariance square roots when many) give the same distance, up to
    the square root's rounding on rank-deficient covariances (eigenvalues of 1e-16 have roots of 1e-8)."""
    rng = np.random.default_rng(2)
    real = rng.standard_normal((counts[0], 24))
    generated = rng.standard_normal((counts[1], 24)) @ rng.standard_normal((24, 24)) * 0.5 + 0.3
    statistics = [torch.from_numpy(a) for a in (real.mean(0), np.cov(real, rowvar=False), generated.mean(0), np.cov(generated, rowvar=False))]
    assert feature_frechet_distance(torch.from_numpy(real), torch.from_numpy(generated)) == pytest.approx(frechet_distance(*statistics), rel=1e-7)


def test_identical_feature_sets_are_at_distance_zero_and_one_sample_is_not_enough():
    features = torch.randn(7, 2048)
    assert feature_frechet_distance(features, features.clone()) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(NotEnoughData, match="at least 2 samples"):
        feature_frechet_distance(features[:1], features)


# --- Videos, pairing, registry and skip reasons ------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_folders(tmp_path_factory) -> tuple[Path, Path]:
    """real/: a (16 frames), b (16 frames), c (only real); generated/: a, b at another size, d (only generated)."""
    root = tmp_path_factory.mktemp("clips")
    for seed, name in enumerate("abc"):
        write_clip(root / "real", name, 16, 48, seed)
    for seed, name in enumerate("abd"):
        write_clip(root / "generated", name, 16, 32, seed + 10, wav=False)
    return root / "real", root / "generated"


def test_pairs_are_matched_by_name_and_read_at_the_generated_size(clip_folders):
    real, generated = clip_folders
    pairs = pair_videos(generated, real)
    assert pairs.names == ["a", "b"] and pairs.only_generated == ["d"] and pairs.only_real == ["c"]
    video = pairs.real[1]
    assert video.name == "b" and video.frames.shape == (16, 32, 32, 3) and video.fps == pytest.approx(25)
    assert [v.name for v in pairs.generated] == ["a", "b"]
    assert pair_videos(generated, real, (64, 64)).generated[0].frames.shape == (16, 64, 64, 3)
    frames, fps = read_frames(real / "a.mp4")
    assert frames.shape == (16, 48, 48, 3) and frames.dtype == np.uint8 and fps == pytest.approx(25)


def test_speech_comes_from_the_wav_beside_a_video_or_from_its_own_track(clip_folders, tmp_path):
    real, _ = clip_folders
    pairs = pair_videos(real, real)
    assert pairs.real[0].speech.shape == (16 * 640,)
    silent = copy_folder(real, tmp_path / "silent")
    with pytest.raises(MediaError, match="no speech"):
        _ = pair_videos(silent, silent).real[0].speech


def test_no_common_name_is_an_error_that_lists_both_sides(clip_folders, tmp_path):
    real, _ = clip_folders
    write_clip(tmp_path / "other", "zzz", 4, 32, 0)
    with pytest.raises(MediaError, match="no video in .* has a real counterpart.*zzz"):
        pair_videos(tmp_path / "other", real)


def test_every_metric_without_weights_is_skipped_with_the_file_and_where_to_put_it(clip_folders, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    real, generated = clip_folders
    report, results = evaluate(generated, real, list(METRICS))
    assert [r.status for r in results] == ["skipped"] * len(METRICS)
    reasons = {name: entry["reason"] for name, entry in report["metrics"].items()}
    assert "pt_inception-2015-12-05-6726825d.pth" in reasons["fid"] and "pytorch-fid" in reasons["fid"]
    assert "i3d_torchscript.pt" in reasons["fvd"] and "stylegan-v" in reasons["fvd"]
    assert "alexnet-owt-7be5be79.pth" in reasons["lpips"]
    assert "w600k_r50.onnx" in reasons["csim"] and "buffalo_l" in reasons["csim"]
    assert "syncnet_v2.safetensors" in reasons["lse"] and "convert" in reasons["lse"]
    assert all(f"--weights DIR or set ${WEIGHTS_ENV}" in reason for reason in reasons.values())
    assert report["pairs"] == ["a", "b"] and report["only_generated"] == ["d"] and report["frame_size"] == [32, 32]


def test_weights_are_looked_up_in_the_environment_folder_and_the_pickle_is_refused(clip_folders, tmp_path, monkeypatch):
    real, generated = clip_folders
    (tmp_path / "syncnet_v2.model").write_bytes(b"a pickle, never to be loaded")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    report, _ = evaluate(generated, real, ["lse", "fid"])
    assert "found syncnet_v2.model" in report["metrics"]["lse"]["reason"] and "never loads" in report["metrics"]["lse"]["reason"]
    assert f"in the weights folder {tmp_path}" in report["metrics"]["fid"]["reason"]
    assert report["weights"] == str(tmp_path)


def test_a_missing_package_is_a_skip_reason(clip_folders, tmp_path, monkeypatch):
    """CSIM runs ArcFace with onnxruntime or OpenCV's dnn module; without either it says what to install."""
    real, generated = clip_folders
    (tmp_path / "w600k_r50.onnx").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    monkeypatch.delattr(cv2, "dnn")
    report, _ = evaluate(generated, real, ["csim"], weights=tmp_path)
    assert report["metrics"]["csim"]["status"] == "skipped" and "pip install onnxruntime" in report["metrics"]["csim"]["reason"]


def test_a_weights_file_of_the_wrong_kind_is_an_error_in_the_report_not_a_crash(clip_folders, tmp_path):
    real, generated = clip_folders
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    (tmp_path / "w600k_r50.onnx").write_bytes(b"not an onnx model")
    (tmp_path / "i3d_torchscript.pt").write_bytes(b"not torchscript")
    report, _ = evaluate(generated, real, ["fid", "csim", "fvd"], weights=tmp_path)
    assert report["metrics"]["fid"]["status"] == "error" and "470 missing (first: Conv2d_1a_3x3.conv.weight)" in report["metrics"]["fid"]["reason"]
    assert report["metrics"]["csim"]["status"] == "error" and "ONNX" in report["metrics"]["csim"]["reason"]
    assert report["metrics"]["fvd"]["status"] == "error" and "TorchScript" in report["metrics"]["fvd"]["reason"]


def test_unknown_metric_names_and_the_weights_list(capsys, clip_folders):
    real, generated = clip_folders
    assert evaluate_main(["--generated", str(generated), "--real", str(real), "--metrics", "fid,efid"]) == 2
    assert "unknown metric(s) efid" in capsys.readouterr().err
    listing = describe_weights()
    assert all(file.name in listing for metric in METRICS.values() for file in metric.weights)


# --- Metrics end to end, with random weights in the real file formats ----------------------------------


class TinyI3D(nn.Module):
    """Stands in for StyleGAN-V's i3d_torchscript.pt: the same call, (N, 3, T, H, W) uint8 -> (N, 400)."""

    def __init__(self):
        super().__init__()
        self.projection = nn.Linear(3 * 16, 400)

    def forward(self, videos: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        x = videos.float()
        if rescale:
            x = x / 127.5 - 1
        return self.projection(x.mean(dim=(3, 4)).flatten(1))


def write_random_weights(folder: Path) -> Path:
    """Random weights for FVD, LPIPS and LSE in the files and formats the metrics expect."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.jit.script(TinyI3D()).save(str(folder / "i3d_torchscript.pt"))
    alexnet = AlexNetFeatures().state_dict() | {"classifier.1.weight": torch.zeros(4096, 9216)}  # as torchvision's file
    torch.save(alexnet, folder / "alexnet-owt-7be5be79.pth")
    torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(CHANNELS)}, folder / "alex.pth")
    syncnet = {k: v for k, v in SyncNet().state_dict().items() if not k.endswith("num_batches_tracked")}  # as the 2017 original
    safetensors.torch.save_file(syncnet, str(folder / "syncnet_v2.safetensors"))
    return folder


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_identical_videos_score_zero_and_different_ones_do_not(clip_folders, tmp_path):
    """FVD, LPIPS and LSE through the command line with random weights; CSIM and FID are skipped."""
    real, generated = clip_folders
    weights = write_random_weights(tmp_path / "weights")
    same = copy_folder(real, tmp_path / "same", "*")  # with the .wav files: the speech for lip sync
    out = tmp_path / "report.json"
    args = ["--real", str(real), "--weights", str(weights), "--metrics", "fvd,lpips,lse,csim", "--device", "cpu"]
    assert evaluate_main(["--generated", str(same), "--out", str(out), *args]) == 0
    report = json.loads(out.read_text())["metrics"]
    assert report["lpips"]["values"]["LPIPS"] == 0.0 and report["lpips"]["counts"] == {"frame_pairs": 48}
    assert report["fvd"]["values"]["FVD"] == pytest.approx(0.0, abs=1e-6) and report["fvd"]["counts"]["real_windows"] == 3
    assert report["fvd"]["notes"] and "fewer than the 400 feature dimensions" in report["fvd"]["notes"][0]
    lse = report["lse"]["values"]
    assert lse["LSE-D"] == pytest.approx(lse["LSE-D (real)"]) and math.isfinite(lse["LSE-C"]) and report["lse"]["counts"]["generated_videos"] == 3
    assert report["csim"]["status"] == "skipped"

    assert evaluate_main(["--generated", str(generated), "--out", str(out), *args]) == 0
    report = json.loads(out.read_text())["metrics"]
    assert report["lpips"]["values"]["LPIPS"] > 0.01 and report["fvd"]["values"]["FVD"] > 0.01
    # Generated videos without a .wav or audio track cannot be scored for lip sync: said, not crashed.
    assert report["lse"]["status"] == "skipped" and "no speech" in report["lse"]["reason"]


def test_fid_with_random_inception_weights_under_pytorch_fids_key_names(tmp_path):
    for seed, name in enumerate("ab"):
        write_clip(tmp_path / "real", name, 3, 32, seed)
        write_clip(tmp_path / "generated", name, 3, 32, seed + 5)
    same = copy_folder(tmp_path / "real", tmp_path / "same")
    torch.manual_seed(0)
    network = FIDInception()
    for module in network.modules():  # random BN statistics, so that the features are not all alike
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    classifier = {"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}  # in the file, not used
    torch.save(network.state_dict() | classifier, tmp_path / "pt_inception-2015-12-05-6726825d.pth")

    report, _ = evaluate(same, tmp_path / "real", ["fid"], weights=tmp_path)
    fid = report["metrics"]["fid"]
    assert fid["status"] == "ok" and fid["values"]["FID"] == pytest.approx(0.0, abs=1e-6)
    assert fid["counts"] == {"real_frames": 6, "generated_frames": 6} and "rank-deficient" in fid["notes"][0]
    report, _ = evaluate(tmp_path / "generated", tmp_path / "real", ["fid"], weights=tmp_path)
    assert report["metrics"]["fid"]["values"]["FID"] > 0


# --- Metric pieces -----------------------------------------------------------------------------------------


def test_mfcc_frames_follow_python_speech_features_framing_and_the_dct_is_orthonormal():
    assert mfcc(np.zeros(400)).shape == (1, 13)
    assert mfcc(np.random.default_rng(0).standard_normal(16_000)).shape == (99, 13)  # 1 + ceil((16000 - 400) / 160)
    basis = dct_matrix(26, 26)
    torch.testing.assert_close(torch.from_numpy(basis @ basis.T), torch.eye(26, dtype=torch.float64))


def test_sync_scores_find_the_shift_between_lips_and_speech():
    generator = torch.Generator().manual_seed(0)
    speech = torch.randn(40, 8, generator=generator)
    lips = torch.roll(speech, shifts=-3, dims=0)  # lip window i matches speech window i + 3
    scores = sync_scores(lips[:30], speech[:30], max_shift=5)
    # The distance is not 0: the last 3 lip windows meet the zero padding past the end of the speech.
    assert scores.offset == -3 and scores.distance < 0.5 and scores.confidence > 2


def test_similarity_transform_recovers_a_rotation_scale_and_shift():
    angle, scale, shift = 0.3, 2.5, np.array([40.0, -7.0])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = (TEMPLATE @ rotation.T) * scale + shift
    matrix = similarity_transform(moved, TEMPLATE)
    np.testing.assert_allclose(np.c_[moved, np.ones(5)] @ matrix.T, TEMPLATE, atol=1e-9)


def test_identity_similarity_is_one_for_the_source_itself_and_counts_frames_without_a_face(clip_folders):
    """The CSIM path with a stand-in embedder (mean colour of the aligned face) instead of ArcFace."""
    real, generated = clip_folders
    pairs = pair_videos(generated, real)
    align = FaceAligner()

    def embed(faces: np.ndarray) -> np.ndarray:
        return faces.reshape(len(faces), -1, 3).mean(axis=1) - 100

    same = identity_similarity(pairs.real, pairs.real, embed, align)
    assert same.shape == (32,) and same[0] == pytest.approx(1.0) and same[16] == pytest.approx(1.0)
    assert align.centre_crops == 34  # discs are not faces: every frame, and each source again
    assert identity_similarity(pairs.real, pairs.generated, embed, FaceAligner()).min() < 0.999


# --- Rendering the test split ------------------------------------------------------------------------------


def test_render_test_is_deterministic_resumable_and_scored_against_its_clips(small_model_dir, tmp_path, capsys):
    clips = tmp_path / "clips"
    for seed, name in enumerate(["one", "two"]):
        write_clip(clips, name, 30, 48, seed)
    common = ["--clips", str(clips), "--models", str(small_model_dir), "--seed", "3", "--nfe", "2", "--device", "cpu"]
    assert render_main([*common, "--out", str(tmp_path / "first"), "--side-by-side"]) == 0
    assert render_main([*common, "--out", str(tmp_path / "second"), "--limit", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "first").iterdir()) == ["one.mp4", "one_compare.mp4", "two.mp4", "two_compare.mp4"]
    assert [p.name for p in (tmp_path / "second").iterdir()] == ["one.mp4"]

    first, fps = read_frames(tmp_path / "first" / "one.mp4")
    assert first.shape == (30, 32, 32, 3) and fps == pytest.approx(25)  # 1.2 s of speech at 25 fps, model size
    np.testing.assert_array_equal(read_frames(tmp_path / "second" / "one.mp4")[0], first)
    compare, _ = read_frames(tmp_path / "first" / "one_compare.mp4")
    assert compare.shape == (30, 32, 64, 3)
    speech = pair_videos(tmp_path / "first", clips).generated[0].speech  # the render's own audio track
    assert abs(len(speech) - 30 * 640) <= 2048

    stamp = (tmp_path / "first" / "one.mp4").stat().st_mtime_ns
    capsys.readouterr()
    assert render_main([*common, "--out", str(tmp_path / "first"), "--side-by-side"]) == 0
    assert (tmp_path / "first" / "one.mp4").stat().st_mtime_ns == stamp and capsys.readouterr().out.count("skipped") == 2

    report, _ = evaluate(tmp_path / "first", clips, ["lpips"])
    assert report["pairs"] == ["one", "two"] and report["only_generated"] == ["one_compare", "two_compare"]
