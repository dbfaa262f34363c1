"""Random and degenerate inputs shared by the tests: boxes, box pairs, logits, labels,
and the IoU-family configurations.

Every factory takes a ``seed`` and draws from its own ``torch.Generator``, so a test's
input does not depend on which tests ran before it. Random numbers are drawn in
float64 and cast, so the same seed gives the same boxes in every dtype (up to rounding).
"""
import torch

from detloss_plugin.functional import iou_losses as IL

F64 = torch.float64


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_boxes(n, seed, dtype=F64, size=20.0, max_wh=10.0, min_wh=0.1):
    """``Tensor[n, 4]`` well-formed boxes ``(x1, y1, x2, y2)``: corners uniform in
    ``[0, size)``, widths and heights uniform in ``[min_wh, min_wh + max_wh)``."""
    g = generator(seed)
    xy = torch.rand(n, 2, generator=g, dtype=F64) * size
    wh = torch.rand(n, 2, generator=g, dtype=F64) * max_wh + min_wh
    return torch.cat([xy, xy + wh], 1).to(dtype)


def box_pairs(n, seed, dtype=F64, size=20.0, max_wh=10.0, pull=0.3):
    """``(pred, target)``, ``Tensor[n, 4]`` each: independent random boxes, with every
    other prediction pulled onto its target (``target + pull * (pred - target)``) so
    that the IoU covers ``(0, 1]`` as well as disjoint pairs."""
    pred = random_boxes(n, seed, F64, size, max_wh)
    target = random_boxes(n, seed + 1, F64, size, max_wh)
    pred[::2] = target[::2] + pull * (pred[::2] - target[::2])
    return pred.to(dtype), target.to(dtype)


def scored_boxes(n, seed, size=300.0, max_wh=60.0, dtype=torch.float32):
    """``(boxes, scores)`` for NMS: :func:`random_boxes` (sides at least 1) and scores
    uniform in ``[0, 1)``."""
    boxes = random_boxes(n, seed, dtype, size, max_wh, min_wh=1.0)
    return boxes, torch.rand(n, generator=generator(seed + 1000)).to(dtype)


def degenerate_pairs(dtype=F64):
    """``(pred, target)`` at every kink of the IoU losses: ties of edges, touching
    boxes, zero areas, nesting, no overlap, zero targets (RetinaNet's negatives), large
    coordinates. A loss must be finite on all of them, in value and gradient."""
    rows = [
        ([1, 2, 4, 6], [1, 2, 4, 6]),          # identical: every edge ties
        ([0, 0, 10, 10], [2, 3, 5, 7]),        # target inside pred
        ([2, 3, 5, 7], [0, 0, 10, 10]),        # pred inside target
        ([0, 0, 2, 2], [0, 0, 3, 1]),          # shared left and bottom edges
        ([0, 0, 1, 1], [1, 0, 2, 1]),          # touching: intersection width exactly 0
        ([0, 0, 1, 1], [1, 1, 2, 2]),          # touching at a corner
        ([3, 3, 3, 3], [1, 1, 5, 5]),          # zero-area pred inside the target
        ([2, 2, 2, 5], [1, 1, 5, 5]),          # zero-width pred
        ([1, 1, 1, 1], [1, 1, 1, 1]),          # two identical points
        ([0, 0, 1, 1], [1000, 1000, 1001, 1003]),  # far apart
        ([5, 5, 9, 8], [0, 0, 0, 0]),          # zero target
        ([0, 0, 0, 0], [0, 0, 0, 0]),          # all zero
        ([0, 0, 3, 0], [0, 0, 3, 2]),          # zero-height pred on the target's edge
        ([1000.5, 2000.25, 1100, 2050], [1010, 2001, 1090, 2060]),  # large coordinates
    ]
    pred = torch.tensor([r[0] for r in rows], dtype=F64)
    target = torch.tensor([r[1] for r in rows], dtype=F64)
    return pred.to(dtype), target.to(dtype)


def random_logits(n=400, c=5, seed=0, scale=6.0, dtype=torch.float32, soft=True):
    """``(logits, targets)``, ``Tensor[n, c]`` each: normal logits times ``scale``;
    0/1 targets (20% ones), the second half of the rows background (all zeros), and
    with ``soft`` the first ``min(20, n // 4)`` rows soft targets in ``[0, 1)``."""
    g = generator(seed)
    x = torch.randn(n, c, generator=g, dtype=F64) * scale
    t = (torch.rand(n, c, generator=g, dtype=F64) < 0.2).to(F64)
    t[n // 2:] = 0
    if soft:
        k = min(20, n // 4)
        t[:k] = torch.rand(k, c, generator=g, dtype=F64)
    return x.to(dtype), t.to(dtype)


def random_labels(n, num_classes, seed=0, ignored=0):
    """``LongTensor[n]`` in ``[0, num_classes)``; the first ``ignored`` are -100."""
    labels = torch.randint(0, num_classes, (n,), generator=generator(seed))
    labels[:ignored] = -100
    return labels


# name -> (function, kwargs): every configuration of the IoU-family functions
IOU_LOSSES = {
    'iou_linear': (IL.iou_loss, dict(mode='linear')),
    'iou_log': (IL.iou_loss, dict(mode='log')),
    'giou': (IL.giou_loss, {}),
    'diou': (IL.diou_loss, {}),
    'ciou': (IL.ciou_loss, {}),
    'ciou_gate': (IL.ciou_loss, dict(alpha_gate=True)),
    'ciou_authors': (IL.ciou_loss, dict(authors_gradient=True)),
    'ciou_gate_authors': (IL.ciou_loss, dict(alpha_gate=True, authors_gradient=True)),
    'eiou': (IL.eiou_loss, {}),
    'focal_eiou': (IL.focal_eiou_loss, {}),
    'focal_eiou_gamma1': (IL.focal_eiou_loss, dict(gamma=1.0)),
    'focal_eiou_gamma0': (IL.focal_eiou_loss, dict(gamma=0.0)),
    'focal_eiou_gamma07': (IL.focal_eiou_loss, dict(gamma=0.7)),
    'focal_eiou_detached': (IL.focal_eiou_loss, dict(detach_weight=True)),
}
# The authors' CIoU gradient and the detached focal weight are not the derivative of
# the value, so finite differences cannot check them.
TRUE_GRADIENT = [k for k in IOU_LOSSES if k not in ('ciou_authors', 'ciou_gate_authors',
                                                     'focal_eiou_detached')]


def iou_fn(name):
    """The IoU-family function of configuration ``name``, as ``f(pred, target)``."""
    fn, kwargs = IOU_LOSSES[name]
    return lambda pred, target: fn(pred, target, **kwargs)
