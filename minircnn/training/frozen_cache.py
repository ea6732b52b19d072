"""The frozen blocks' output of each training image, computed once and kept.

Fast R-CNN fine-tunes VGG16 from conv3_1 up (section 4.5): conv1 and conv2 stay fixed,
and so do blocks 1-2 of the toy's SmallVGG. For a given image, flip and scale those
blocks always give the same output, and training sees each one many times (800 images,
each flipped or not, in 3,600 minibatches of 2: about 4.5 times per (image, flip)). So
the first time is computed and kept, and every later time is read: the same values, so
the same training, without most of the frozen blocks' forward work. Faster R-CNN's
joint training (training/rpn_step.py) reads the same backbone, so it keeps the same
store. (R-CNN kept whole
features, on disk: Fast R-CNN's section 1.1. Here it is only the fixed part, in memory.)

The store stops growing at ``MAX_BYTES``; images past it are computed each time, as
without a store.
"""

from __future__ import annotations

from minircnn.backend import get_array_module

# What the store may hold. The default recipe's (800 images x 2 flips, (32, 32, 32)
# float32 each) is 210 MB.
MAX_BYTES = 512 * 2**20


class FrozenFeatures:
    """``backbone.forward_frozen`` of training images, each computed once.

    Args:
        backbone: a backbone with ``forward_frozen`` / ``forward_trainable`` and some
            frozen blocks (``usable`` says whether a backbone is one).
    """

    def __init__(self, backbone, max_bytes: int = MAX_BYTES):
        self.backbone = backbone
        self.max_bytes = max_bytes
        self.store: dict = {}            # key -> (C, h, w) frozen output of one image
        self.bytes = 0

    @staticmethod
    def usable(model) -> bool:
        """Whether ``model`` can start from a stored output: a FastRCNN
        (``forward_from_frozen``; R-CNN and SPP-net run their backbone otherwise), or a
        FasterRCNN whose RPN reads that FastRCNN's backbone (approximate joint training;
        the alternating one gives the RPN a backbone of its own), and whose backbone
        splits into frozen and trainable blocks (a SmallVGG with ``freeze_blocks(k)``,
        k >= 1)."""
        if getattr(model, "rpn_backbone", None) is not None:
            return False
        detector = getattr(model, "detector", model)     # a FasterRCNN's FastRCNN
        backbone = getattr(detector, "backbone", None)
        return (hasattr(detector, "forward_from_frozen")
                and hasattr(backbone, "forward_frozen")
                and getattr(backbone, "frozen_blocks", 0) > 0)

    def lookup(self, keys: list, images):
        """The frozen output (N, C, h, w) of ``images`` (N, 3, H, W), one key each.

        A key names what makes an image: its index in the training set, its flip and
        its scale. Images never seen are computed in one forward pass and kept.
        """
        xp = get_array_module(images)
        missing = [j for j, key in enumerate(keys) if key not in self.store]
        if missing:
            computed = self.backbone.forward_frozen(images[missing])   # (M, C, h, w)
            for j, out in zip(missing, computed, strict=True):
                if self.bytes + out.nbytes <= self.max_bytes:
                    self.store[keys[j]] = out
                    self.bytes += out.nbytes
            if len(missing) == len(keys):
                return computed
            fresh = dict(zip(missing, computed, strict=True))
            return xp.stack([fresh[j] if j in fresh else self.store[key]
                             for j, key in enumerate(keys)])
        return xp.stack([self.store[key] for key in keys])
