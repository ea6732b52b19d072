"""Batch normalisation over (N, H, W) per channel; BatchNorm2d and FrozenBatchNorm2d.

Training mode normalises with the batch's own statistics (batchnorm2d_forward); eval
mode, and FrozenBatchNorm2d always, apply a fixed per-channel affine map built from
the running statistics (batchnorm2d_eval_forward). Derivation: docs/layers/norm.md.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from minircnn.backend import get_array_module
from minircnn.layers.module import Module, Parameter
from minircnn.utils.validate import (
    check_array,
    check_count,
    check_dout,
    check_number,
    check_positive,
)


def _per_channel(v):
    return v.reshape(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1), broadcasts over N, H, W


def _check_bn_inputs(x, gamma, beta, eps=1e-5):
    """Validate (lists become arrays; an integer x is refused); return x, gamma, beta."""
    x = check_array("x", x, op="batchnorm2d", ndim=4, axes="(N, C, H, W)")
    gamma = check_array("gamma", gamma, op="batchnorm2d", like=x, kinds="fiu")
    beta = check_array("beta", beta, op="batchnorm2d", like=x, kinds="fiu")
    check_positive("eps", eps, op="batchnorm2d", allow_zero=True)   # torch allows 0
    c = x.shape[1]
    for name, v in (("gamma", gamma), ("beta", beta)):
        if v.shape != (c,):
            raise ValueError(f"batchnorm2d: {name} must have shape ({c},) for x with "
                             f"{c} channels, got {tuple(v.shape)}")
    return x, gamma, beta


def _check_running_stats(x, running_mean, running_var, eps):
    """running_mean and running_var: (C,) finite; the variance >= 0 and var + eps > 0 (its
    square root divides)."""
    c = x.shape[1]
    op = "batchnorm2d_eval"
    running_mean = check_array("running_mean", running_mean, op=op, like=x, kinds="fiu",
                               shape=(c,), finite=True)
    running_var = check_array("running_var", running_var, op=op, like=x, kinds="fiu",
                              shape=(c,), finite=True)
    low = float(running_var.min()) if c else 0.0
    if low < 0 or (c and low + eps <= 0):
        raise ValueError(f"{op}: running_var must be >= 0 (and > 0 when eps is 0), got "
                         f"min {low!r}")
    return running_mean, running_var


# --- training mode: batch statistics ---------------------------------------------------
class BatchNormCache(NamedTuple):
    xhat: np.ndarray     # (N, C, H, W) normalised input
    gamma: np.ndarray    # (C,) scale
    inv_std: np.ndarray  # (C,) 1 / sqrt(var + eps)
    mean: np.ndarray     # (C,) batch mean (BatchNorm2d updates its running mean from it)
    var: np.ndarray      # (C,) biased batch variance


def batchnorm2d_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *,
                        eps: float = 1e-5) -> tuple[np.ndarray, BatchNormCache]:
    """Batch norm with batch statistics (torch.nn.functional.batch_norm, training=True).

    Each channel is normalised with the mean and biased variance of its N*H*W values,
    then scaled and shifted: out = gamma * (x - mean) / sqrt(var + eps) + beta.

    Args:
        x: (N, C, H, W).  gamma: (C,) scale.  beta: (C,) shift.
        eps: added to the variance.
    Returns:
        out (N, C, H, W) and a BatchNormCache (its mean / var are the batch statistics).
    """
    x, gamma, beta = _check_bn_inputs(x, gamma, beta, eps)
    if x.shape[0] * x.shape[2] * x.shape[3] == 0:   # a mean over no values is undefined
        raise ValueError(f"batchnorm2d: x must hold at least one value per channel in "
                         f"training mode (N*H*W >= 1), got shape {tuple(x.shape)}")
    xp = get_array_module(x)
    mean = x.mean(axis=(0, 2, 3))  # (C,)
    centered = x - _per_channel(mean)  # (N, C, H, W)
    var = (centered * centered).mean(axis=(0, 2, 3))  # (C,) biased: divide by N*H*W
    inv_std = 1.0 / xp.sqrt(var + eps)  # (C,)
    xhat = centered * _per_channel(inv_std)  # (N, C, H, W)
    out = xhat * _per_channel(gamma) + _per_channel(beta)  # (N, C, H, W)
    return out, BatchNormCache(xhat, gamma, inv_std, mean, var)


def batchnorm2d_backward(dout: np.ndarray, cache: BatchNormCache) -> tuple[np.ndarray, ...]:
    """dout (N, C, H, W) -> dx (N, C, H, W), dgamma (C,), dbeta (C,).

    With M = N*H*W values per channel and g = dout * gamma (the gradient at xhat), the
    compact form is dx = inv_std / M * (M g - sum(g) - xhat * sum(g * xhat)), sums per
    channel. Derivation: docs/layers/norm.md.
    """
    xhat, gamma, inv_std = cache.xhat, cache.gamma, cache.inv_std
    check_dout(dout, xhat.shape, xhat.dtype, xhat, op="batchnorm2d_backward")
    m = xhat.shape[0] * xhat.shape[2] * xhat.shape[3]  # values per channel
    dbeta = dout.sum(axis=(0, 2, 3))  # beta broadcast over N, H, W: sum -> (C,)
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))  # dL/dgamma = sum dout·xhat -> (C,)
    g = dout * _per_channel(gamma)  # dL/dxhat = dout·gamma, (N, C, H, W)
    g_sum = _per_channel(g.sum(axis=(0, 2, 3)))  # (1, C, 1, 1)
    gx_sum = _per_channel((g * xhat).sum(axis=(0, 2, 3)))  # (1, C, 1, 1)
    # dx = inv_std/M · (M g − Σg − xhat Σ(g·xhat))
    dx = _per_channel(inv_std / m) * (m * g - g_sum - xhat * gx_sum)
    return dx, dgamma, dbeta


# --- eval mode: a fixed affine map from running statistics -----------------------------
class BatchNormEvalCache(NamedTuple):
    x: np.ndarray        # (N, C, H, W) input
    mean: np.ndarray     # (C,) running mean used
    inv_std: np.ndarray  # (C,) 1 / sqrt(running_var + eps)
    scale: np.ndarray    # (C,) gamma * inv_std


def batchnorm2d_eval_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                             running_mean: np.ndarray, running_var: np.ndarray, *,
                             eps: float = 1e-5) -> tuple[np.ndarray, BatchNormEvalCache]:
    """Batch norm with fixed statistics (F.batch_norm, training=False): an affine map.

    out = x * scale + shift, scale = gamma / sqrt(running_var + eps),
    shift = beta - running_mean * scale (torchvision.ops.FrozenBatchNorm2d).

    Args:
        x: (N, C, H, W).  gamma, beta, running_mean, running_var: (C,).
    Returns:
        out (N, C, H, W) and a BatchNormEvalCache.
    """
    x, gamma, beta = _check_bn_inputs(x, gamma, beta, eps)
    running_mean, running_var = _check_running_stats(x, running_mean, running_var, eps)
    xp = get_array_module(x)
    inv_std = 1.0 / xp.sqrt(running_var + eps)  # (C,)
    scale = gamma * inv_std  # (C,)
    shift = beta - running_mean * scale  # (C,)
    out = x * _per_channel(scale) + _per_channel(shift)  # (N, C, H, W)
    return out, BatchNormEvalCache(x, running_mean, inv_std, scale)


def batchnorm2d_eval_backward(dout: np.ndarray,
                              cache: BatchNormEvalCache) -> tuple[np.ndarray, ...]:
    """dout (N, C, H, W) -> dx (N, C, H, W), dgamma (C,), dbeta (C,); statistics are constants."""
    check_dout(dout, cache.x.shape, None, cache.x, op="batchnorm2d_eval_backward")
    dx = dout * _per_channel(cache.scale)  # out = x·scale + shift: dL/dx = dout·scale
    xhat = (cache.x - _per_channel(cache.mean)) * _per_channel(cache.inv_std)  # (N, C, H, W)
    dgamma = (dout * xhat).sum(axis=(0, 2, 3))  # out = gamma·xhat + beta: sum dout·xhat -> (C,)
    dbeta = dout.sum(axis=(0, 2, 3))  # dL/dbeta = sum dout -> (C,)
    return dx, dgamma, dbeta


# --- modules ---------------------------------------------------------------------------
class BatchNorm2d(Module):
    """torch.nn.BatchNorm2d: batch statistics in training, running statistics in eval.

    Parameters ``weight`` (gamma, starts at 1) and ``bias`` (beta, starts at 0); buffers
    ``running_mean`` (starts at 0) and ``running_var`` (starts at 1), the names torch
    and FrozenBatchNorm2d use, so a BatchNorm2d state_dict loads into a
    FrozenBatchNorm2d. Each training forward updates
    ``running = (1 - momentum) * running + momentum * batch_stat`` with the *unbiased*
    batch variance (times M / (M - 1)), as torch does.

    Args:
        num_features: C.  momentum: weight of the new batch statistic.  eps: see forward.
        dtype: dtype of parameters and buffers.
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5, *,
                 dtype=np.float32):
        self.num_features = check_count("num_features", num_features, op="BatchNorm2d")
        self.momentum = check_number("momentum", momentum, op="BatchNorm2d", low=0.0, high=1.0)
        self.eps = check_positive("eps", eps, op="BatchNorm2d", allow_zero=True)
        self.weight = Parameter(np.ones(num_features, dtype=dtype))
        self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype=dtype))

    def forward(self, x):
        if not self.training:
            out, self.cache = batchnorm2d_eval_forward(
                x, self.weight.data, self.bias.data, self.running_mean, self.running_var,
                eps=self.eps)
            return out
        m = x.shape[0] * x.shape[2] * x.shape[3] if x.ndim == 4 else 0
        if m < 2:
            raise ValueError(f"BatchNorm2d: training needs more than 1 value per channel, "
                             f"got x of shape {tuple(x.shape)}")
        out, self.cache = batchnorm2d_forward(x, self.weight.data, self.bias.data, eps=self.eps)
        unbiased_var = self.cache.var * (m / (m - 1))  # (C,) running var is unbiased (torch)
        mom = self.momentum
        self.running_mean[...] = (1 - mom) * self.running_mean + mom * self.cache.mean
        self.running_var[...] = (1 - mom) * self.running_var + mom * unbiased_var
        return out

    def backward(self, dout):
        if isinstance(self.cache, BatchNormEvalCache):
            dx, dgamma, dbeta = batchnorm2d_eval_backward(dout, self.cache)
        else:
            dx, dgamma, dbeta = batchnorm2d_backward(dout, self.cache)
        self.weight.accumulate(dgamma)
        self.bias.accumulate(dbeta)
        return dx

    def __repr__(self) -> str:
        return f"BatchNorm2d({self.num_features}, momentum={self.momentum}, eps={self.eps})"


class FrozenBatchNorm2d(Module):
    """torchvision.ops.FrozenBatchNorm2d: batch norm with everything fixed.

    Buffers ``weight``, ``bias``, ``running_mean``, ``running_var`` (no Parameters, so
    optimizers and state_dict treat them as constants); forward is always the affine map
    ``x * scale + shift`` with scale = weight / sqrt(running_var + eps) and
    shift = bias - running_mean * scale; backward returns dx only. Used when fine-tuning
    a pretrained backbone with small batches (Fast R-CNN trains with 2 images).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, *, dtype=np.float32):
        self.num_features = check_count("num_features", num_features, op="FrozenBatchNorm2d")
        self.eps = check_positive("eps", eps, op="FrozenBatchNorm2d", allow_zero=True)
        self.register_buffer("weight", np.ones(num_features, dtype=dtype))
        self.register_buffer("bias", np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_mean", np.zeros(num_features, dtype=dtype))
        self.register_buffer("running_var", np.ones(num_features, dtype=dtype))

    def forward(self, x):
        out, self.cache = batchnorm2d_eval_forward(
            x, self.weight, self.bias, self.running_mean, self.running_var, eps=self.eps)
        return out

    def backward(self, dout):
        return dout * _per_channel(self.cache.scale)  # out = x·scale + shift: dx = dout·scale

    def __repr__(self) -> str:
        return f"FrozenBatchNorm2d({self.num_features}, eps={self.eps})"
