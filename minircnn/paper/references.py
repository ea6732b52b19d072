"""The Fast R-CNN paper's sections, tables, figures and equations, as data.

Every citation of the paper in the README, docs, lessons and code (``section 5.2``,
``§5.2``, ``Table 7``, ``Figure 2``, ``eq. 3``) must name an entry here, and an entry
whose topic fits the sentence: tests/paper/test_references.py scans the text and checks
both. Numbers and titles are the paper's own (Girshick, "Fast R-CNN", ICCV 2015,
arXiv:1504.08083); ``reports`` says what each one shows, with the paper's numbers.

A few citations name the Faster R-CNN paper (Ren, He, Girshick, Sun, arXiv:1506.01497,
the v3 / TPAMI numbering): they must say so ("Faster R-CNN paper, section 1") and are
checked against ``FASTER_RCNN``, numbered as arXiv v3. The NIPS, v3 and TPAMI versions
number some tables differently: only those checked in v3 are listed; cite another by
caption, or add it here after checking (the NIPS version numbers the figures
differently too).
"""

from __future__ import annotations

from typing import NamedTuple


class Entry(NamedTuple):
    title: str      # the paper's title or caption, shortened where it runs on
    reports: str    # what it says or measures (the paper's numbers)


class Paper(NamedTuple):
    name: str
    reference: str
    sections: dict[str, Entry]    # "5.2" -> Entry
    tables: dict[int, Entry]
    figures: dict[int, Entry]
    equations: dict[int, Entry]


class Topic(NamedTuple):
    name: str
    pattern: str                 # regex (case-insensitive) of words that name the topic
    refs: frozenset[str]         # the places that treat it: "§5.2", "Table 7", "Figure 2", "eq. 1"


FAST_RCNN = Paper(
    name="Fast R-CNN",
    reference="R. Girshick, Fast R-CNN, ICCV 2015, arXiv:1504.08083",
    sections={
        "1": Entry("Introduction", "detectors train in slow multi-stage pipelines; Fast R-CNN "
                   "trains VGG16 9x faster than R-CNN, 3x faster than SPPnet, tests in 0.3 s "
                   "per image (proposals excluded), 66% mAP on VOC 2012 (R-CNN 62%)"),
        "1.1": Entry("R-CNN and SPPnet", "their drawbacks: multi-stage training (fine-tune, "
                     "SVMs, box regressors), features written to disk (2.5 GPU-days, hundreds "
                     "of GB for VOC07), R-CNN tests in 47 s per image; SPPnet shares the "
                     "convolutions (10-100x faster tests) but cannot update them"),
        "1.2": Entry("Contributions", "higher mAP, single-stage training with a multi-task "
                     "loss, every layer trained, no disk cache of features"),
        "2": Entry("Fast R-CNN architecture and training", "an image and its RoIs -> conv "
                   "feature map -> RoI pooling -> fc layers -> softmax over K+1 classes and "
                   "per-class box offsets (Figure 1)"),
        "2.1": Entry("The RoI pooling layer", "max pooling of an h x w RoI into an H x W grid "
                     "of sub-windows of about h/H x w/W; a one-level spatial pyramid"),
        "2.2": Entry("Initializing from pre-trained networks", "the last max pool becomes RoI "
                     "pooling (7 x 7 for VGG16), the last fc and softmax become the two "
                     "sibling layers, the network takes images and RoIs"),
        "2.3": Entry("Fine-tuning for detection", "why SPPnet cannot train below its pyramid; "
                     "hierarchical sampling (N = 2 images, R = 128 RoIs, ~64x faster than one "
                     "RoI per image); the multi-task loss (eq. 1-3); minibatch sampling (25% "
                     "foreground IoU >= 0.5, background in [0.1, 0.5), flips); back-propagation "
                     "through RoI pooling (eq. 4); SGD hyper-parameters (fc init std 0.01 and "
                     "0.001, lr 0.001 for 30k iterations then 0.0001 for 10k, momentum 0.9, "
                     "weight decay 0.0005)"),
        "2.4": Entry("Scale invariance", "two ways: brute force (one pre-defined size) or an "
                     "image pyramid; multi-scale training samples a pyramid scale per image"),
        "3": Entry("Fast R-CNN detection", "one forward pass over an image (or an image "
                   "pyramid) and R ~ 2000 proposals; with a pyramid each RoI is scored at the "
                   "scale that brings its area closest to 224^2 pixels; score p_k, then "
                   "per-class NMS as in R-CNN"),
        "3.1": Entry("Truncated SVD for faster detection", "with many RoIs the fc layers take "
                     "nearly half the forward pass (Figure 2); W ~ U S_t V^T (eq. 5) replaces "
                     "one fc layer by two with no non-linearity, uv -> t(u + v) parameters"),
        "4": Entry("Main results", "state-of-the-art mAP, fast training and testing, "
                   "fine-tuning the conv layers of VGG16 matters"),
        "4.1": Entry("Experimental setup", "models S (CaffeNet), M (VGG_CNN_M_1024) and L "
                     "(VGG16); single-scale training and testing, s = 600"),
        "4.2": Entry("VOC 2010 and 2012 results", "Tables 2-3: 66.1% on VOC10 and 65.7% on "
                     "VOC12 (68.8% and 68.4% with extra data)"),
        "4.3": Entry("VOC 2007 results", "Table 1: 66.9% against SPPnet's 63.1% and R-CNN's "
                     "66.0%; 68.1% without 'difficult' examples"),
        "4.4": Entry("Training and testing time", "Table 4: against R-CNN, 9x faster training "
                     "(84 h -> 9.5 h) and 146x faster tests (213x with truncated SVD); "
                     "against SPPnet 2.7x and 7x (10x); truncated SVD (fc6 rank 1024, fc7 rank "
                     "256) cuts detection time by more than 30% for 0.3 mAP points (Figure 2)"),
        "4.5": Entry("Which layers to fine-tune?", "Table 5: freezing VGG16's 13 conv layers "
                     "drops mAP from 66.9% to 61.4%; conv1 is generic; from conv3_1 up is "
                     "enough (from conv2_1: +0.3 points, 1.3x slower)"),
        "5": Entry("Design evaluation", "ablations on PASCAL VOC07"),
        "5.1": Entry("Does multi-task training help?", "Table 6: multi-task training beats "
                     "classification-only by +0.8 to +1.1 mAP, and stage-wise box training"),
        "5.2": Entry("Scale invariance: to brute force or finesse?", "Table 7: five scales "
                     "{480, 576, 688, 864, 1200} against one (s = 600): a small mAP gain at a "
                     "large cost in time; every other experiment uses one scale"),
        "5.3": Entry("Do we need more training data?", "VOC07 + VOC12 trainval (16.5k images) "
                     "raises VOC07 mAP from 66.9% to 70.0% (Table 1), 60k iterations instead of "
                     "40k; VOC10 66.1 -> 68.8, VOC12 65.7 -> 68.4"),
        "5.4": Entry("Do SVMs outperform softmax?", "Table 8: the softmax beats post-hoc "
                     "one-vs-rest SVMs with hard negative mining by +0.1 to +0.8 mAP"),
        "5.5": Entry("Are more proposals always better?", "Figure 3: mAP rises then falls "
                     "slightly from 1k to 10k selective search proposals; average recall does "
                     "not track mAP; dense boxes alone (45k per image) 52.9%, SVMs on them "
                     "49.3%"),
        "5.6": Entry("Preliminary MS COCO results", "35.9% PASCAL-style mAP, 19.7% COCO AP "
                     "on test-dev"),
        "6": Entry("Conclusion", "sparse object proposals appear to improve detector quality"),
    },
    tables={
        1: Entry("VOC 2007 test detection average precision (%)", "per-class AP and mAP, VGG16: "
                 "SPPnet 63.1, R-CNN 66.0, Fast R-CNN 66.9 (68.1 without 'difficult', 70.0 "
                 "trained on 07+12)"),
        2: Entry("VOC 2010 test detection average precision (%)", "Fast R-CNN 66.1 (68.8 on "
                 "07++12), SegDeepM 67.2, R-CNN 62.9, BabyLearning 63.8"),
        3: Entry("VOC 2012 test detection average precision (%)", "Fast R-CNN 65.7 (68.4 on "
                 "07++12), R-CNN 62.4, NUS_NIN_c2000 63.8, BabyLearning 63.2"),
        4: Entry("Runtime comparison between the same models in Fast R-CNN, R-CNN, and SPPnet",
                 "train time (h), test rate (s/image) and VOC07 mAP for S, M, L: Fast R-CNN "
                 "1.2/2.0/9.5 h, 0.10/0.15/0.32 s (SVD 0.06/0.08/0.22), 57.1/59.2/66.9 mAP (SVD "
                 "56.5/58.7/66.6); R-CNN 22/28/84 h, 9.8/12.1/47.0 s, 58.5/60.2/66.0; SPPnet "
                 "(L) 25 h, 2.3 s, 63.1; speed-ups against R-CNN: training 18.3/14.0/8.8x, "
                 "test 98/80/146x (SVD 169/150/213x), SPPnet 3.4x and 20x"),
        5: Entry("Effect of restricting which layers are fine-tuned for VGG16", "VOC07 mAP "
                 "fine-tuning >= fc6 61.4, >= conv3_1 66.9, >= conv2_1 67.2; SPPnet L (>= fc6, "
                 "five scales) 63.1 at 2.3 s/image against 0.32"),
        6: Entry("Multi-task training improves mAP over piecewise training", "VOC07 mAP per "
                 "model (classification only, multi-task without test-time box regression, "
                 "stage-wise, multi-task): S 52.2 53.3 54.6 57.1, M 54.7 55.5 56.6 59.2, "
                 "L 62.6 63.4 64.0 66.9"),
        7: Entry("Multi-scale vs. single scale", "test rate and VOC07 mAP with 1 or 5 scales: "
                 "SPPnet ZF 0.14 s 58.0 / 0.38 s 59.2, S 0.10 s 57.1 / 0.39 s 58.4, M 0.15 s "
                 "59.2 / 0.64 s 60.7, L (1 scale only) 0.32 s 66.9"),
        8: Entry("Fast R-CNN with softmax vs. SVM (VOC07 mAP)", "S/M/L: R-CNN SVM 58.5/60.2/"
                 "66.0, Fast R-CNN SVM 56.3/58.7/66.8, Fast R-CNN softmax 57.1/59.2/66.9"),
    },
    figures={
        1: Entry("Fast R-CNN architecture", "image and RoIs -> conv network -> RoI pooling -> "
                 "fc layers -> softmax and per-class box offsets, trained end to end with a "
                 "multi-task loss"),
        2: Entry("Timing for VGG16 before and after truncated SVD", "fc6 and fc7 take 45% of "
                 "the forward pass before SVD; 320 ms/image at 66.9% mAP -> 223 ms at 66.6%"),
        3: Entry("VOC07 test mAP and AR for various proposal schemes", "mAP and average recall "
                 "against the number of proposals: selective search 1k-10k, plus dense boxes, "
                 "dense boxes only (softmax and SVM)"),
    },
    equations={
        1: Entry("multi-task loss", "L = L_cls(p, u) + lambda [u >= 1] L_loc(t^u, v)"),
        2: Entry("box regression loss", "L_loc = sum over x, y, w, h of smooth_L1(t^u_i - v_i)"),
        3: Entry("smooth L1", "0.5 x^2 if |x| < 1, |x| - 0.5 otherwise"),
        4: Entry("RoI pooling backward", "dL/dx_i = sum_r sum_j [i = i*(r, j)] dL/dy_rj"),
        5: Entry("truncated SVD", "W ~ U S_t V^T"),
    },
)

FASTER_RCNN = Paper(
    name="Faster R-CNN",
    reference="S. Ren, K. He, R. Girshick, J. Sun, Faster R-CNN, arXiv:1506.01497 (v3, TPAMI)",
    sections={
        "1": Entry("Introduction", "proposals are the test-time bottleneck once Fast R-CNN "
                   "shares convolutions; selective search takes 2 s per image on a CPU, "
                   "EdgeBoxes 0.2 s"),
        "2": Entry("Related Work", "object proposals; deep networks for object detection"),
        "3": Entry("Faster R-CNN", "a region proposal network and a Fast R-CNN detector "
                   "sharing one backbone"),
        "3.1": Entry("Region Proposal Networks", "a small network slid over the feature map "
                     "predicts objectness and box offsets at each position"),
        "3.1.1": Entry("Anchors", "k reference boxes per position (3 scales x 3 aspect "
                       "ratios), translation invariant"),
        "3.1.2": Entry("Loss Function", "anchor labels by IoU (> 0.7 positive, < 0.3 "
                       "negative), classification + smooth L1 regression"),
        "3.1.3": Entry("Training RPNs", "image-centric sampling of 256 anchors, up to 1:1 "
                       "positives to negatives"),
        "3.2": Entry("Sharing Features for RPN and Fast R-CNN", "alternating training, "
                     "approximate and non-approximate joint training; 4-step training"),
        "3.3": Entry("Implementation Details", "single scale s = 600, anchor handling at "
                     "image borders, NMS at IoU 0.7 on the proposals"),
        "4": Entry("Experiments", "PASCAL VOC and MS COCO"),
        "4.1": Entry("Experiments on PASCAL VOC", "RPN against selective search and EdgeBoxes, "
                     "ablations, timing"),
        "4.2": Entry("Experiments on MS COCO", "COCO results"),
        "4.3": Entry("From MS COCO to PASCAL VOC", "COCO pre-training for VOC"),
        "5": Entry("Conclusion", "RPNs make proposals nearly cost-free"),
    },
    tables={
        5: Entry("Timing (ms) on a K40 GPU, except SS proposal is evaluated in a CPU",
                 "per-image time of conv, proposal and region-wise parts: selective search "
                 "1510 ms, RPN 10 ms on the shared features (Table 4 in the NIPS version)"),
    },
    figures={
        1: Entry("Different schemes for addressing multiple scales and sizes", "image "
                 "pyramids, filter pyramids, and pyramids of reference boxes (anchors)"),
        2: Entry("Faster R-CNN is a single, unified network for object detection", "the RPN "
                 "as the 'attention' of the detector, on shared conv features"),
        3: Entry("Region Proposal Network; example detections", "the sliding 3x3 window, "
                 "k anchors per position, cls and reg layers; detections with RPN proposals"),
        4: Entry("Recall vs. IoU overlap ratio on the PASCAL VOC 2007 test set", "recall of "
                 "selective search, EdgeBoxes and the RPN with 300, 1000 and 2000 proposals "
                 "(Figure 2 in the NIPS version)"),
    },
    equations={
        1: Entry("RPN loss", "L = 1/N_cls sum L_cls(p_i, p_i*) + lambda 1/N_reg sum p_i* "
                 "L_reg(t_i, t_i*)"),
        2: Entry("box parameterisation", "t_x = (x - x_a)/w_a, t_y = (y - y_a)/h_a, "
                 "t_w = log(w/w_a), t_h = log(h/h_a), and the same for t*"),
    },
)


def _refs(*items: str) -> frozenset[str]:
    return frozenset(items)


# Which places of the paper treat which topic. A citation near words of a topic must name
# one of the places of at least one topic mentioned there (tests/paper/test_references.py).
FAST_RCNN_TOPICS = (
    Topic("scale invariance, image pyramids",
          r"pyramid|multi-?scale|single[- ]scale|\bscales?\b|scale invarian|224",
          _refs("§2.4", "§3", "§4.1", "§5.2", "Table 7")),
    Topic("truncated SVD",
          r"\bSVD\b|singular|low[- ]rank|\brank\b",
          _refs("§3.1", "§4.4", "Table 4", "Figure 2", "eq. 5")),
    Topic("softmax vs SVMs",
          r"\bSVMs?\b|one-vs-rest|hard[- ]negative",
          _refs("§1.1", "§5.4", "§5.5", "Table 8", "Figure 3")),
    Topic("more training data",
          r"more (training )?data|training data|less data|data fraction|VOC ?2012|07\+12",
          _refs("§5.3", "Table 1", "Table 2", "Table 3")),
    Topic("which layers to fine-tune",
          r"fine-?tun|freez|frozen|conv3_1|which layers|fixed (conv|feature|backbone)",
          _refs("§1.1", "§1.2", "§2.3", "§4", "§4.3", "§4.5", "Table 5")),
    Topic("multi-task training",
          r"multi-?task|stage-?wise|piecewise|lambda|λ",
          _refs("§1.2", "§2.3", "§5.1", "Table 6", "eq. 1", "Figure 1")),
    Topic("number of proposals, dense boxes",
          r"more proposals|number of proposals|(proposals|boxes) per image|dense|average recall",
          _refs("§3", "§5.5", "Figure 3")),
    Topic("R-CNN and SPP-net against Fast R-CNN",
          r"(?<!Fast )(?<!Faster )R-CNN\b|SPP-?net|faster than",
          _refs("§1", "§1.1", "§1.2", "§2.3", "§4.3", "§4.4", "Table 1", "Table 4", "Table 5",
                "Table 7", "Table 8")),
    Topic("detection at test time",
          r"test time|test-time|\bNMS\b|non-maximum",
          _refs("§3", "§3.1", "§4.4", "Table 4", "Figure 2")),
    Topic("hierarchical minibatch sampling",
          r"mini-?batch|hierarchical|sampl|foreground|background",
          _refs("§2.3")),
    Topic("RoI pooling",
          r"RoI ?pool|roi_pool|sub-window|argmax",
          _refs("§2", "§2.1", "§2.2", "§2.3", "eq. 4", "Figure 1")),
    Topic("the loss",
          r"smooth ?L1|log loss|L_cls|L_loc",
          _refs("§2.3", "eq. 1", "eq. 2", "eq. 3")),
    Topic("initialisation and pre-training",
          r"initiali[sz]|N\(0|pre-?train",
          _refs("§2.2", "§2.3", "§4.1", "§4.5", "Table 5")),
    Topic("the SGD recipe",
          r"learning rate|momentum|weight decay|iterations",
          _refs("§2.3", "§5.3")),
)

FASTER_RCNN_TOPICS = (
    Topic("proposal cost", r"selective search|2 s\b|per image|bottleneck|EdgeBoxes|time",
          _refs("§1", "§4.1", "Table 5")),
    Topic("anchors", r"anchor", _refs("§3.1", "§3.1.1", "§3.1.2", "§3.1.3", "§3.3", "eq. 1",
                                      "eq. 2")),
    Topic("shared features", r"alternating|joint training|4-step|shar",
          _refs("§3", "§3.2", "Figure 2")),
    Topic("proposal recall", r"recall", _refs("§4.1", "Figure 4")),
)

PAPERS = {"Fast R-CNN": (FAST_RCNN, FAST_RCNN_TOPICS),
          "Faster R-CNN": (FASTER_RCNN, FASTER_RCNN_TOPICS)}


def exists(paper: Paper, ref: str) -> bool:
    """Whether ``ref`` ("§5.2", "Table 7", "Figure 2", "eq. 1") names a place of ``paper``."""
    kind, _, number = ref.partition(" ") if not ref.startswith("§") else ("§", "", ref[1:])
    if kind == "§":
        return number in paper.sections
    places = {"Table": paper.tables, "Figure": paper.figures, "eq.": paper.equations}
    return kind in places and number.isdigit() and int(number) in places[kind]


def describe(paper: Paper, ref: str) -> str:
    """``ref`` with its title, e.g. "§5.3 Do we need more training data?"."""
    if ref.startswith("§"):
        return f"{ref} {paper.sections[ref[1:]].title}"
    kind, number = ref.split(" ")
    places = {"Table": paper.tables, "Figure": paper.figures, "eq.": paper.equations}
    return f"{ref} {places[kind][int(number)].title}"
