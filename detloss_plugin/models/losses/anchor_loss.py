"""Anchor loss (``AnchorLoss``), sigmoid (dense heads) and softmax (RoI heads).

Call contract: :mod:`detloss_plugin.models.losses.cls_base`. The maths and the
adaptation to detection are in :func:`detloss_plugin.functional.sigmoid_anchor_loss`
and :func:`detloss_plugin.functional.softmax_anchor_loss`.
"""
from detloss_plugin.functional import classification as F
from detloss_plugin.registry import MODELS
from .cls_base import ClassificationLoss

__all__ = ['AnchorLoss']


@MODELS.register_module()
class AnchorLoss(ClassificationLoss):
    """Anchor loss, Ryou et al., ICCV 2019, https://arxiv.org/abs/1909.11155
    (reference: slryou41/AnchorLoss).

    Args:
        use_sigmoid: one-vs-all sigmoid form, the reference's (True, default; dense
            heads, background = a row of zero targets) or softmax over the columns,
            background column included (False; RoI heads).
        gamma: modulation exponent (0.5).
        slack: margin of the anchor probability (0.05).
        anchor: ``'neg'`` (default, modulates the losses of the false classes by how
            close their score is to the true class's) or ``'pos'`` (modulates the true
            class's loss by the best false class's score).
        activated, ignore_index, reduction, loss_weight: see the call contract.

    Adaptation to detection (documented in the functions): a background anchor's
    reference score is its background probability ``1 - max_k sigmoid(x_k)``; the
    softmax form applies the paper's per-class formula to softmax probabilities (so its
    ``gamma = 0`` limit is CE plus ``-sum_{k != y} log(1 - p_k)``). The reference's
    5-epoch cross-entropy warm-up is not built in. Reduction as focal loss in mmdet's
    heads (sum over classes and anchors, divided by ``avg_factor``); the reference
    sums over classes and averages over samples, which is ``reduction='none'`` then
    ``.sum(1).mean()``.
    """

    def __init__(self, use_sigmoid: bool = True, gamma: float = 0.5, slack: float = 0.05,
                 anchor: str = 'neg', activated: bool = False, ignore_index: int = -100,
                 reduction: str = 'mean', loss_weight: float = 1.0) -> None:
        super().__init__(use_sigmoid, activated, ignore_index, reduction, loss_weight)
        F._check_anchor(gamma, slack, anchor)
        self.gamma = float(gamma)
        self.slack = float(slack)
        self.anchor = anchor

    def sigmoid_loss(self, logits, targets):
        return F.sigmoid_anchor_loss(logits, targets, self.gamma, self.slack, self.anchor)

    def softmax_loss(self, logits, labels):
        return F.softmax_anchor_loss(logits, labels, self.gamma, self.slack, self.anchor,
                                     self.ignore_index)

    def extra_repr(self) -> str:
        return (super().extra_repr()
                + f', gamma={self.gamma}, slack={self.slack}, anchor={self.anchor!r}')
