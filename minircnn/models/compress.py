"""Truncated SVD compression of a trained detector's fully connected layers.

Fast R-CNN, section 3.1: at test time a detector runs its fc layers once per RoI, so
with 2000 RoIs per image fc6 and fc7 take a large share of the time. ``compress_linear``
replaces a trained Linear by its rank-t truncated SVD, a LowRankLinear layer
(minircnn/layers/low_rank_linear.py, where the maths is); ``compress_fast_rcnn`` does it
to a FastRCNN's fc6 / fc7, and ``layer_cost`` / ``head_cost`` count what it saves.
"""

from __future__ import annotations

import copy

from minircnn.layers.linear import Linear
from minircnn.layers.low_rank_linear import LowRankLinear, truncated_svd


def compress_linear(layer: Linear, rank: int) -> LowRankLinear:
    """The rank-``rank`` truncated SVD of a trained Linear layer, as a LowRankLinear.

    The new layer owns copies of its arrays (the original layer is left untouched).
    Raises TypeError when ``layer`` is not a Linear, ValueError for a bad rank.
    """
    if not isinstance(layer, Linear):
        raise TypeError(f"compress_linear: layer must be a Linear, got {type(layer).__name__}")
    w1, w2 = truncated_svd(layer.w.data, rank)
    return LowRankLinear(w1, w2, layer.b.data.copy())


def compress_fast_rcnn(model, rank_fc6: int | None, rank_fc7: int | None = None, *,
                       inplace: bool = False):
    """Fast R-CNN with fc6 and fc7 replaced by their truncated SVDs (paper section 3.1).

    Args:
        model: a FastRCNN (anything with Linear ``fc6`` and ``fc7`` attributes).
        rank_fc6, rank_fc7: the ranks t (None leaves that layer as it is). The paper
            compresses VGG16's fc6 (25088 -> 4096) to t = 1024 and fc7 (4096 -> 4096)
            to t = 256.
        inplace: replace the layers of ``model`` itself; by default a deep copy is
            compressed and ``model`` is left untouched.
    Returns:
        the compressed model; ``detect`` and ``forward`` work unchanged. Its state_dict
        has ``fc6.w1``, ``fc6.w2``, ``fc6.b`` instead of ``fc6.w``, ``fc6.b``, so
        ``load_checkpoint`` (which rebuilds Linear layers) cannot read it back.
    """
    out = model if inplace else copy.deepcopy(model)
    for name, rank in (("fc6", rank_fc6), ("fc7", rank_fc7)):
        if rank is not None:
            setattr(out, name, compress_linear(getattr(out, name), rank))
    return out


def layer_cost(layer, rows: int = 1) -> dict:
    """Parameters and forward FLOPs (2 per multiply-add) of a Linear or LowRankLinear.

    Linear: params M·D + M, flops 2·rows·M·D. LowRankLinear: params t·(D + M) + M,
    flops 2·rows·t·(D + M). Bias additions are not counted as FLOPs.
    """
    if isinstance(layer, LowRankLinear):
        mults = layer.rank * (layer.in_features + layer.out_features)
    elif isinstance(layer, Linear):
        mults = layer.in_features * layer.out_features
    else:
        raise TypeError(f"layer_cost: expected a Linear or LowRankLinear, got "
                        f"{type(layer).__name__}")
    return {"params": int(mults + layer.out_features), "flops": 2 * int(rows) * mults}


def head_cost(model, num_rois: int = 1) -> dict:
    """Parameters and forward FLOPs of a Fast R-CNN's fc6 + fc7 for ``num_rois`` RoIs:
    ``{"fc6": layer_cost, "fc7": layer_cost, "params": total, "flops": total}``."""
    costs = {name: layer_cost(getattr(model, name), num_rois) for name in ("fc6", "fc7")}
    return {**costs, "params": costs["fc6"]["params"] + costs["fc7"]["params"],
            "flops": costs["fc6"]["flops"] + costs["fc7"]["flops"]}
