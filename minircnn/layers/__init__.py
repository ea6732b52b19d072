"""Layers: functional ``op_forward`` / ``op_backward`` pairs and thin Module classes.

Everything public is importable from here: ``from minircnn.layers import conv2d_forward``.
"""

from minircnn.layers.activations import (
    Dropout,
    Flatten,
    ReLU,
    dropout_backward,
    dropout_forward,
    relu_backward,
    relu_forward,
)
from minircnn.layers.conv import (
    Conv2d,
    col2im,
    conv2d_backward,
    conv2d_backward_naive,
    conv2d_forward,
    conv2d_forward_naive,
    im2col,
)
from minircnn.layers.conv_active import ActiveConv2d, conv2d_backward_active
from minircnn.layers.global_pool import (
    GlobalAvgPool,
    global_avg_pool_backward,
    global_avg_pool_forward,
)
from minircnn.layers.linear import Linear, linear_backward, linear_forward
from minircnn.layers.losses import (
    fast_rcnn_loss_backward,
    fast_rcnn_loss_forward,
    smooth_l1_backward,
    smooth_l1_forward,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from minircnn.layers.low_rank_linear import (
    LowRankLinear,
    low_rank_linear_backward,
    low_rank_linear_forward,
    truncated_svd,
)
from minircnn.layers.module import Module, OpModule, Parameter, Sequential
from minircnn.layers.norm import (
    BatchNorm2d,
    FrozenBatchNorm2d,
    batchnorm2d_backward,
    batchnorm2d_eval_backward,
    batchnorm2d_eval_forward,
    batchnorm2d_forward,
)
from minircnn.layers.pool import (
    MaxPool2d,
    max_pool2d_backward,
    max_pool2d_backward_naive,
    max_pool2d_forward,
    max_pool2d_forward_naive,
)
from minircnn.layers.residual_add import AddCache, add_backward, add_forward
from minircnn.layers.roi_align import (
    RoIAlign,
    roi_align_backward,
    roi_align_backward_naive,
    roi_align_forward,
    roi_align_forward_naive,
)
from minircnn.layers.roi_pool import (
    RoIPool,
    SpatialPyramidPool,
    roi_pool_backward,
    roi_pool_backward_naive,
    roi_pool_bins,
    roi_pool_forward,
    roi_pool_forward_naive,
    roi_pool_forward_vectorized,
    spp_backward,
    spp_forward,
)
from minircnn.layers.rpn_loss import (
    bce_with_logits_backward,
    bce_with_logits_forward,
    rpn_loss_backward,
    rpn_loss_forward,
)
