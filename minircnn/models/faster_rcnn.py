"""Faster R-CNN (Ren et al., 2015): Fast R-CNN with an RPN on the same features.

Faster R-CNN (Ren et al., 2015): Fast R-CNN whose proposals come from an RPN on the
same features.

::

    images --backbone--> features --+--RPN--> objectness, deltas --decode/NMS--> proposals
                                    +--RoI pool (proposals)--> fc6, fc7 --> scores, deltas

``FasterRCNN`` holds the two parts, ``detector`` (a FastRCNN, backbone included) and
``rpn`` (a RegionProposalNetwork); the backbone is the detector's and the RPN reads its
features. ``forward(images, rois)`` is the detector's, so ``detect``, evaluation and
``minircnn eval`` treat it as any detector; ``propose(images)`` gives the proposals.
Training (approximate joint or the paper's alternating) lives in
minircnn/training/rpn_step.py: models do not train themselves.
"""

from __future__ import annotations

from minircnn.layers.module import no_grad
from minircnn.models.detector import Detector
from minircnn.models.fast_rcnn import FastRCNN
from minircnn.models.rpn import RegionProposalNetwork
from minircnn.utils.validate import check_array


class FasterRCNN(Detector):
    """A FastRCNN and a RegionProposalNetwork sharing the FastRCNN's backbone.

    Args:
        detector: the FastRCNN (its backbone's ``out_channels`` and ``feature_stride``
            must be the RPN's ``in_channels`` and ``stride``).
        rpn: the RegionProposalNetwork.
        rpn_backbone: None (the RPN reads the detector's backbone), or a backbone of the
            RPN's own: the paper's alternating training gives the RPN its own copy until
            the two share (minircnn/training/rpn_step.py).
    """

    def __init__(self, detector: FastRCNN, rpn: RegionProposalNetwork, rpn_backbone=None):
        if not isinstance(detector, FastRCNN) or not isinstance(rpn, RegionProposalNetwork):
            raise TypeError(f"FasterRCNN: needs a FastRCNN and a RegionProposalNetwork, got "
                            f"{type(detector).__name__} and {type(rpn).__name__}")
        backbone = detector.backbone
        if (rpn.head.in_channels, rpn.stride) != (backbone.out_channels,
                                                  backbone.feature_stride):
            raise ValueError(f"FasterRCNN: the RPN reads {rpn.head.in_channels} channels at "
                             f"stride {rpn.stride}, the backbone gives "
                             f"{backbone.out_channels} at stride {backbone.feature_stride}")
        self.detector = detector
        self.rpn = rpn
        self.rpn_backbone = rpn_backbone

    @property
    def backbone(self):
        return self.detector.backbone

    @property
    def proposal_backbone(self):
        """The backbone the RPN reads: its own while the alternating recipe trains one,
        else the detector's (shared)."""
        return self.backbone if self.rpn_backbone is None else self.rpn_backbone

    @property
    def num_classes(self) -> int:
        return self.detector.num_classes

    @property
    def classes(self):
        return self.detector.classes

    def get_config(self) -> dict:
        return {"detector": self.detector, "rpn": self.rpn, "rpn_backbone": self.rpn_backbone}

    def forward(self, images, rois):
        """The detector's forward: cls_scores (R, K+1), bbox_deltas (R, 4(K+1))."""
        return self.detector.forward(images, rois)

    def backward(self, dcls, dbbox):
        return self.detector.backward(dcls, dbbox)

    def propose(self, images, **overrides) -> list:
        """One (P, 4) array of proposals per image (N, 3, H, W), best first.

        No backward follows (proposals are fixed boxes to the detector), so it runs as
        under ``no_grad``: no layer keeps a cache."""
        images = check_array("images", images, op="FasterRCNN", ndim=4, axes="(N, 3, H, W)")
        backbone = self.proposal_backbone
        with no_grad(self):
            features = backbone.forward(images)                # (N, C, H/s, W/s)
            return self.rpn.proposals(features, images.shape[2:], **overrides)
