"""Step through one training step of Fast R-CNN, naive loops included, in pdb.

    python scripts/step_through.py

builds the detector `minircnn train` trains (pretrained SmallVGG, blocks 1-2 frozen,
RoIAlign, fc6/fc7 and the two heads) on two small shapes images, switches every layer to
its naive version (``model.impl = "naive"``: convolution, max pooling and RoIAlign as
explicit loops), and runs one SGD step written out line by line, as
minircnn/training/step.py's ``train_step`` does. It stops in pdb (``breakpoint()``) just
before ``model.backward``. Then:

    (Pdb) s            step into FastRCNN.backward: one line per layer, in reverse order
    (Pdb) n            ... until the line ``dfeatures = self.roi.backward(dpooled)``
    (Pdb) s            into RoIAlign.backward: two lines; the third s lands in
                       roi_align_backward_naive
    (Pdb) n            line by line into the loops; ``p r, c, ph, pw`` says where you are
    (Pdb) c            finish the step: the script prints the loss and the gradient norms

``s`` from a layer's ``backward`` lands in the op's naive function in two steps: the
layer calls the function it chose when ``impl`` was set (minircnn/layers/module.py,
``OpModule``). ``PYTHONBREAKPOINT=0 python scripts/step_through.py`` runs without
stopping.
"""

from __future__ import annotations

import numpy as np

from minircnn.layers.losses import fast_rcnn_loss_backward, fast_rcnn_loss_forward
from minircnn.training.config import TrainConfig, make_datasets, make_detector
from minircnn.training.optim import SGD
from minircnn.training.proposals import load_proposals
from minircnn.training.step import sample_batch

# The recipe on two 64-pixel images and 8 RoIs, so the naive loops finish in seconds.
CONFIG = TrainConfig(num_train=2, num_val=1, image_size=64, proposal_method="dense",
                     max_proposals=50, cache_dir="", rois_per_batch=8)


def main() -> dict:
    config = CONFIG
    model = make_detector(config)          # what `minircnn train` starts from
    model.impl = "naive"                   # every conv, pool and RoIAlign: explicit loops
    train, _ = make_datasets(config)
    items = [train[i] for i in range(len(train))]
    props = load_proposals(train, config, progress=False)
    rng = np.random.default_rng([config.seed, 1])
    images, batch = sample_batch(config, items, props, [0, 1], rng)
    optimizer = SGD(model.parameters(), config.lr, momentum=config.momentum,
                    weight_decay=config.weight_decay)

    optimizer.zero_grad()
    cls_scores, bbox_deltas = model.forward(images, batch.rois)       # (R, K+1), (R, 4(K+1))
    loss, cache = fast_rcnn_loss_forward(cls_scores, bbox_deltas, batch.labels,
                                         batch.bbox_targets)
    dcls, dbbox = fast_rcnn_loss_backward(1.0, cache)                 # dloss/dscores, /ddeltas
    breakpoint()                           # (Pdb) s: into model.backward
    model.backward(dcls, dbbox)            # fills p.grad of every trainable parameter
    optimizer.step()

    norms = {name: float(np.linalg.norm(p.grad)) for name, p in model.named_parameters()
             if p.requires_grad}
    print(f"loss {float(loss):.4f} on {len(batch.rois)} RoIs of {len(images)} images")
    for name, norm in norms.items():
        print(f"  |grad {name}| = {norm:.3g}")
    return {"loss": float(loss), "grad_norms": norms}


if __name__ == "__main__":
    main()
