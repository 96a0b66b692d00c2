"""CSIM: identity preservation, the cosine similarity of ArcFace embeddings of the source portrait (the
first real frame) and each generated frame.

The embedding network is insightface's ArcFace `w600k_r50.onnx` (ResNet-50 trained on WebFace600K, from
the `buffalo_l` model pack; non-commercial research use only, so it cannot ship here). It is run with
onnxruntime when installed, else with OpenCV's dnn module. ArcFace expects a 112 x 112 face aligned by
five landmarks (eyes, nose tip, mouth corners) onto its standard template: the landmarks come from
YuNet, whose model ships with float_model. Where YuNet finds no face the centre of the frame is used
instead (in FLOAT's crops the face box is the central 1/1.6 of the side); the report counts those frames.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch

from .registry import Metric, MetricContext, NotEnoughData, Score, WeightFile, WeightsError
from .videos import Video

WEIGHTS = WeightFile(
    "w600k_r50.onnx",
    "insightface's ArcFace R50 from its buffalo_l model pack (github.com/deepinsight/insightface, model_zoo; "
    "non-commercial research use only)",
)
FACE_SIZE = 112
# Where ArcFace's training crops put the right eye, left eye, nose tip, right and left mouth corners (x, y),
# in YuNet's landmark order (the subject's right eye is on the image's left).
TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
# FLOAT crops a square 1.6 times the face box around its centre (float_model.face.MARGIN).
CROP_MARGIN = 1.6
BATCH = 32


def missing_runtime() -> str | None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if not hasattr(cv2, "dnn"):
            return "needs onnxruntime (pip install onnxruntime) or an OpenCV build with its dnn module to run the ArcFace ONNX model"
    return None


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2 x 3 rotation + uniform scale + translation that maps the `source` points (K, 2) onto `target`
    with the least squared error (Umeyama 1991), as insightface aligns faces."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    reflect = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        reflect[1, 1] = -1
    rotation = u @ reflect @ vt
    scale = (singular * np.diag(reflect)).sum() / source_centred.var(axis=0).sum()
    translation = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, translation[:, None]])


class FaceAligner:
    """RGB frames -> 112 x 112 ArcFace crops, aligned on YuNet's five landmarks (or the centre crop)."""

    def __init__(self):
        model = resources.files("float_model").joinpath("face_models", "face_detection_yunet_2023mar.onnx")
        self.detector = cv2.FaceDetectorYN.create(str(model), "", (320, 320), 0.6, 0.3, 5000)
        self.centre_crops = 0

    def landmarks(self, frame: np.ndarray) -> np.ndarray | None:
        """The five landmarks (5, 2) of the most confident face, or None."""
        self.detector.setInputSize((frame.shape[1], frame.shape[0]))
        _, faces = self.detector.detect(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if faces is None or len(faces) == 0:
            return None
        best = faces[np.argmax(faces[:, -1])]
        return best[4:14].reshape(5, 2).astype(np.float64)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        points = self.landmarks(frame)
        if points is None:
            self.centre_crops += 1
            side = min(frame.shape[:2])
            face = round(side / CROP_MARGIN)
            top, left = (frame.shape[0] - face) // 2, (frame.shape[1] - face) // 2
            return cv2.resize(frame[top : top + face, left : left + face], (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
        matrix = similarity_transform(points, TEMPLATE)
        return cv2.warpAffine(frame, matrix, (FACE_SIZE, FACE_SIZE), borderValue=0)


class ArcFace:
    """ArcFace ONNX model: (n, 112, 112, 3) uint8 RGB faces -> (n, D) embeddings (input scaled to [-1, 1])."""

    def __init__(self, path: Path, device: torch.device):
        try:
            import onnxruntime
        except ImportError:
            onnxruntime = None
        try:
            if onnxruntime is not None:
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
                available = [p for p in providers if p in onnxruntime.get_available_providers()]
                self.session = onnxruntime.InferenceSession(str(path), providers=available)
                self.input_name = self.session.get_inputs()[0].name
                self.net = None
            else:
                self.session = None
                self.net = cv2.dnn.readNetFromONNX(str(path))
        except Exception as error:  # both runtimes raise their own error types for unreadable models
            raise WeightsError(f"cannot load {path} as an ONNX model ({error})") from error

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        blob = ((faces.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2).copy()
        if self.session is not None:
            return self.session.run(None, {self.input_name: blob})[0]
        self.net.setInput(blob)
        return self.net.forward()


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True).clip(min=1e-12)


def identity_similarity(real: Sequence[Video], generated: Sequence[Video], embed: Callable[[np.ndarray], np.ndarray], align: FaceAligner) -> np.ndarray:
    """Cosine similarity of each generated frame to its pair's source (first real frame), all pairs concatenated.
    embed: (n, 112, 112, 3) uint8 faces -> (n, D) embeddings, e.g. an `ArcFace`."""
    similarities = []
    for real_video, generated_video in zip(real, generated):
        source = _unit(embed(align(real_video.frames[0])[None]))[0]
        for start in range(0, len(generated_video.frames), BATCH):
            faces = np.stack([align(frame) for frame in generated_video.frames[start : start + BATCH]])
            similarities.append(_unit(embed(faces)) @ source)
    return np.concatenate(similarities) if similarities else np.empty(0)


def compute_csim(real: Sequence[Video], generated: Sequence[Video], context: MetricContext) -> Score:
    embed = ArcFace(context.weights[WEIGHTS.name], context.device)
    align = FaceAligner()
    similarities = identity_similarity(real, generated, embed, align)
    if len(similarities) == 0:
        raise NotEnoughData("CSIM needs at least one generated frame")
    notes = ()
    if align.centre_crops:
        notes = (f"YuNet found no face in {align.centre_crops} frames (sources included); the centre crop was embedded instead",)
    return Score({"CSIM": float(similarities.mean())}, counts={"generated_frames": len(similarities)}, notes=notes)


CSIM = Metric("csim", "cosine similarity of ArcFace identity embeddings, source portrait vs generated frames", (WEIGHTS,), compute_csim, missing_runtime)
