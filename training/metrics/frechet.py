"""The Fréchet distance between two Gaussians fitted to feature sets: the core of FID and FVD.

    d² = |mu1 - mu2|² + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^½)

The matrix square root is avoided altogether, and with it scipy. For any factors with S1 = XᵀX and
S2 = YᵀY, the non-zero eigenvalues of S1 S2 = Xᵀ(X YᵀY) are those of (X YᵀY)Xᵀ = (XYᵀ)(XYᵀ)ᵀ, the
squared singular values of XYᵀ; so Tr((S1 S2)^½) is the sum of the singular values of XYᵀ, and
Tr(S1) = |X|². Two factors are at hand:

- the centred samples / sqrt(N - 1): X is N x D, so with fewer samples than feature dimensions (the usual
  case for 2048-d FID features on a test set) the work is an N1 x N2 SVD, and exact where a square root
  of the rank-deficient covariance would turn its rounding-level eigenvalues (1e-16) into 1e-8;
- the symmetric square root of the covariance (from a symmetric eigen-decomposition): D x D.

Everything runs in float64, as numpy-based FID code does.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .registry import NotEnoughData, Score


def _psd_sqrt(matrix: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix; rounding's tiny negative eigenvalues count as 0."""
    eigenvalues, eigenvectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def _distance(mean1: Tensor, factor1: Tensor, mean2: Tensor, factor2: Tensor) -> float:
    """d² for S1 = factor1ᵀ factor1 and S2 = factor2ᵀ factor2."""
    difference = mean1 - mean2
    trace_sqrt = torch.linalg.svdvals(factor1 @ factor2.T).sum()
    distance = float(difference @ difference + factor1.pow(2).sum() + factor2.pow(2).sum() - 2 * trace_sqrt)
    return max(distance, 0.0)  # identical sets come out as about -1e-12 after rounding


def frechet_distance(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mean1, cov1) and N(mean2, cov2)."""
    mean1, cov1, mean2, cov2 = (t.to(torch.float64) for t in (mean1, cov1, mean2, cov2))
    if mean1.shape != mean2.shape or cov1.shape != cov2.shape or cov1.shape != (mean1.shape[0],) * 2:
        raise ValueError(f"mismatched Gaussians: means {tuple(mean1.shape)}, {tuple(mean2.shape)}; covariances {tuple(cov1.shape)}, {tuple(cov2.shape)}")
    return _distance(mean1, _psd_sqrt(cov1), mean2, _psd_sqrt(cov2))


def _mean_and_factor(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (D,) and a factor X of the unbiased covariance (XᵀX = S), whichever of the two is smaller."""
    if features.dim() != 2:
        raise ValueError(f"expected features (N, D), got {tuple(features.shape)}")
    count, dims = features.shape
    if count < 2:
        raise NotEnoughData(f"a covariance needs at least 2 samples, got {count}")
    features = features.to(torch.float64)
    mean = features.mean(dim=0)
    factor = (features - mean) / (count - 1) ** 0.5
    return mean, (factor if count <= dims else _psd_sqrt(factor.T @ factor))


def feature_frechet_distance(real: Tensor, generated: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets (each N >= 2)."""
    if real.shape[1:] != generated.shape[1:]:
        raise ValueError(f"feature sets of different widths: {tuple(real.shape)} and {tuple(generated.shape)}")
    return _distance(*_mean_and_factor(real), *_mean_and_factor(generated))


def frechet_score(name: str, samples: str, real: Tensor, generated: Tensor) -> Score:
    """FID or FVD as a Score: the distance between the two feature sets (N, D), how many `samples` (frames,
    windows) each side had, and a warning when there are fewer of them than feature dimensions."""
    fewest = min(len(real), len(generated))
    if fewest < 2:
        raise NotEnoughData(f"{name} needs at least 2 {samples} on each side, got {len(real)} real and {len(generated)} generated: give more or longer videos")
    notes = ()
    if fewest < real.shape[1]:
        notes = (
            f"only {fewest} {samples} on one side, fewer than the {real.shape[1]} feature dimensions: the covariance is "
            f"rank-deficient and {name} is biased upwards; compare only with values computed on as many {samples}",
        )
    return Score({name: feature_frechet_distance(real, generated)}, counts={f"real_{samples}": len(real), f"generated_{samples}": len(generated)}, notes=notes)
