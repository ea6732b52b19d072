"""Benchmark setups for the Region Proposal Network at test time (used by ``minircnn bench``).

The shipped Faster R-CNN (``minircnn train --proposals rpn``; trained weights, so NMS
sees a trained RPN's scores) on one held-out 128x128 image, timed as
``minircnn train --proposals rpn`` reports its proposals' time per image
(training/rpn_eval.py): the whole (backbone, then the RPN head, decoding and NMS) and
its two parts, each inside ``no_grad`` as at test time. The detector reuses the
backbone's features, so the Faster R-CNN paper counts the proposals' cost without it.

Each setup takes an ``np.random.Generator`` and returns ``(run, flops)`` (flops None).
"""

from __future__ import annotations

from minircnn.data.shapes import ShapesDataset
from minircnn.layers.module import no_grad
from minircnn.perf.detector_bench import without_grad
from minircnn.training.config import TrainConfig

CONFIG = TrainConfig()


def _setup():
    """The shipped FasterRCNN in eval mode, the backbone its RPN reads, one held-out image."""
    from minircnn.models.pretrained import pretrained_faster_rcnn

    model = pretrained_faster_rcnn()
    model.eval()
    backbone = model.proposal_backbone
    held_out = ShapesDataset(1, image_size=CONFIG.image_size, seed=CONFIG.data_seed + 1)
    image = held_out[0]["image"][None]                                  # (1, 3, H, W)
    return model, backbone, image


def setup_rpn_proposals(rng):
    """Backbone, RPN head, decoding and NMS: ``FasterRCNN.propose`` on one image."""
    model, _, image = _setup()
    return (lambda: model.propose(image)), None


def setup_rpn_backbone(rng):
    model, backbone, image = _setup()
    return without_grad(model, lambda: backbone.forward(image)), None


def setup_rpn_head(rng):
    """The RPN head's convolutions, decoding, top-k and NMS on features already made."""
    model, backbone, image = _setup()
    with no_grad(model):
        features = backbone.forward(image)                              # (1, C, H/s, W/s)
    return without_grad(model, lambda: model.rpn.proposals(features, image.shape[2:])), None
