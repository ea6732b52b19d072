"""What every detector model shares: ``model.detect(image, proposals)``."""

from __future__ import annotations

from minircnn.layers.module import Module


class Detector(Module):
    """A Module whose ``forward(images, rois)`` returns ``(cls_scores, bbox_deltas)``.

    FastRCNN, RCNN and SPPNet derive from it to get ``detect``.
    """

    def detect(self, image, proposals, **kwargs) -> dict:
        """``minircnn.detection.detect(self, image, proposals, **kwargs)``."""
        from minircnn.detection.inference import detect  # detection never imports models

        return detect(self, image, proposals, **kwargs)
