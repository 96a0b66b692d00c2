"""The paper's evaluation metrics, each with the weight files it needs (see `training.evaluate`).

    METRICS["fid"]    FID    pt_inception-2015-12-05-6726825d.pth  (pytorch-fid)
    METRICS["fvd"]    FVD    i3d_torchscript.pt                    (StyleGAN-V, TorchScript)
    METRICS["lpips"]  LPIPS  alexnet-owt-7be5be79.pth + alex.pth   (torchvision AlexNet + lpips v0.1 heads)
    METRICS["csim"]   CSIM   w600k_r50.onnx                        (insightface buffalo_l ArcFace)
    METRICS["lse"]    LSE-D, LSE-C  syncnet_v2.safetensors         (converted from VGG's syncnet_v2.model)

E-FID and P-FID (Fréchet distances of 3DMM expression and pose coefficients) are not here: they need
Deep3DFaceRecon with the licence-gated Basel Face Model, nvdiffrast and a GPU.
"""

from .csim import CSIM
from .fid import FID
from .fvd import FVD
from .lpips import LPIPS_METRIC
from .lse import LSE
from .registry import (
    WEIGHTS_ENV,
    Metric,
    MetricContext,
    MetricResult,
    NotEnoughData,
    Score,
    WeightFile,
    WeightsError,
    find_weights,
    run_metric,
    weights_folder,
)
from .videos import Video, VideoPairs, Videos, pair_videos, read_frames

METRICS: dict[str, Metric] = {metric.name: metric for metric in (FID, FVD, LPIPS_METRIC, CSIM, LSE)}

__all__ = [
    "METRICS", "WEIGHTS_ENV", "Metric", "MetricContext", "MetricResult", "NotEnoughData", "Score", "Video",
    "VideoPairs", "Videos", "WeightFile", "WeightsError", "find_weights", "pair_videos", "read_frames",
    "run_metric", "weights_folder",
]  # fmt: skip
