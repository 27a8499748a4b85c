"""The spectrum of a feature matrix: singular values, effective rank, components for a share of the variance.

The paper's evidence that full fine-tuning collapses the deep features is a PCA of the backbone's patch tokens.
``ivtune analyze`` measures it with these functions on a (tokens, channels) matrix pooled over images:

- **effective rank** (Roy & Vetterli, 2007): ``exp(H(p))`` with ``p_i = s_i / sum(s)`` the normalised singular
  values and ``H`` the Shannon entropy in nats. ``n`` equal singular values give ``n``; one non-zero value gives 1.
- **components for a variance share**: the smallest ``k`` with ``sum(s[:k]^2) / sum(s^2) >= share`` (PCA's
  explained variance is the squared singular values of the centred matrix).
- **token sampling**: a fixed number of patch tokens per image, drawn without replacement by
  :func:`sample_token_indices`, so every image weighs the same whatever its size and the matrix stays small.

Pure tensor maths, no model: the tests check them on matrices with known spectra.
"""

from __future__ import annotations

import torch

from ..errors import InputShapeError

SEED_STRIDE = 1_000_003  # a prime: (seed, image) pairs map to distinct generator seeds for any realistic count


def singular_values(x: torch.Tensor, center: bool = True) -> torch.Tensor:
    """Singular values (descending, float64) of the (n, c) matrix ``x``, its column means removed when ``center``.

    float64 keeps the tail of the spectrum (and so the entropy) free of float32 round-off.
    """
    if x.ndim != 2:
        raise InputShapeError(f"the feature matrix must be (tokens, channels), got shape {tuple(x.shape)}.")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise InputShapeError(f"the feature matrix is empty (shape {tuple(x.shape)}): no tokens were collected.")
    x = x.detach().to(torch.float64)
    if center:
        x = x - x.mean(dim=0, keepdim=True)
    return torch.linalg.svdvals(x)


def effective_rank(s: torch.Tensor) -> float:
    """``exp`` of the entropy of the normalised singular values ``s``; 0.0 for an all-zero spectrum."""
    s = s.detach().to(torch.float64).clamp_min(0)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]  # 0 log 0 = 0
    return float(torch.exp(-(p * p.log()).sum()))


def explained_variance(s: torch.Tensor) -> torch.Tensor:
    """Cumulative share of the variance explained by the first 1, 2, ... components (float64, last entry 1)."""
    var = s.detach().to(torch.float64) ** 2
    total = var.sum()
    if total <= 0:
        return torch.zeros_like(var)
    return (var.cumsum(0) / total).clamp(max=1.0)


def components_for(s: torch.Tensor, share: float) -> int:
    """The smallest number of components explaining at least ``share`` (in (0, 1]) of the variance; 0 if none."""
    if not 0.0 < share <= 1.0:
        raise InputShapeError(f"share must be in (0, 1], got {share}.")
    cum = explained_variance(s)
    if cum.numel() == 0 or cum[-1] <= 0:
        return 0
    # a share of exactly 1 would depend on round-off in the last digits: compare with a relative tolerance
    reached = (cum >= share - 1e-12).nonzero()
    return int(reached[0, 0]) + 1 if reached.numel() else int(cum.numel())


def sample_token_indices(num_tokens: int, k: int, seed: int, image_index: int) -> torch.Tensor:
    """Sorted indices of ``min(k, num_tokens)`` of ``num_tokens`` tokens, uniformly without replacement.

    The generator is seeded with ``seed * SEED_STRIDE + image_index``: the same (seed, image, token count) always
    gives the same tokens, whatever the batch, the order images are read in, the run or the block. ``k <= 0`` or
    ``k >= num_tokens`` keeps every token.
    """
    if num_tokens < 0:
        raise InputShapeError(f"num_tokens must be >= 0, got {num_tokens}.")
    if k <= 0 or k >= num_tokens:
        return torch.arange(num_tokens)
    g = torch.Generator().manual_seed(int(seed) * SEED_STRIDE + int(image_index))
    return torch.randperm(num_tokens, generator=g)[:k].sort().values


def summarise(s: torch.Tensor, shares: tuple[float, ...] = (0.9, 0.99)) -> dict[str, float | int]:
    """``effective_rank`` and ``components_<pct>`` (e.g. ``components_90``) of the spectrum ``s``."""
    out: dict[str, float | int] = {"effective_rank": effective_rank(s)}
    for share in shares:
        out[f"components_{round(share * 100):d}"] = components_for(s, share)
    return out


def pca_basis(x: torch.Tensor, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean (c,), components (k, c))``: the column means and the first ``k`` principal directions of the (n, c)
    matrix ``x`` (float64). Each direction's sign is fixed so that its largest coefficient is positive: the same
    features always give the same colours."""
    if x.ndim != 2 or x.shape[0] < 2:
        raise InputShapeError(f"PCA needs a (tokens >= 2, channels) matrix, got shape {tuple(x.shape)}.")
    x = x.detach().to(torch.float64)
    mean = x.mean(dim=0)
    _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
    comps = vh[:k]
    signs = torch.sign(comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)))
    return mean, comps * torch.where(signs == 0, 1.0, signs)


def max_rank(num_tokens: int, dim: int) -> int:
    """The largest rank a centred (num_tokens, dim) matrix can have."""
    return max(min(num_tokens - 1, dim), 0)


__all__ = ["components_for", "effective_rank", "explained_variance", "max_rank", "pca_basis", "sample_token_indices",
           "singular_values", "summarise", "SEED_STRIDE"]
