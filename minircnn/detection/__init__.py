"""Detection utilities: boxes, proposals, RoI sampling, inference and evaluation.

Everything public is importable from here: ``from minircnn.detection import box_iou``.
These stand alone (they never import models), so ``detect`` takes any model with ``forward``.
"""

from minircnn.detection.anchors import (
    AnchorGenerator,
    AnchorLabelCache,
    anchor_targets,
    base_anchors,
    grid_anchors,
    label_anchors,
    sample_anchors,
)
from minircnn.detection.boxes import (
    batched_nms,
    box_area,
    box_iou,
    check_boxes,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    nms,
)
from minircnn.detection.evaluate import (
    GroundTruth,
    evaluate,
    match_detections,
    recall_vs_proposals,
)
from minircnn.detection.inference import (
    check_model_classes,
    detect,
    detect_images,
    postprocess,
    pyramid_levels,
    rescale_batch,
    resize_bilinear,
)
from minircnn.detection.proposal_cache import compute_proposals
from minircnn.detection.proposals import dense_boxes, selective_search
from minircnn.detection.rpn_proposals import rpn_proposals
from minircnn.detection.sampling import (
    RoIBatch,
    hierarchical_batch,
    region_wise_batch,
    sample_rois,
)
