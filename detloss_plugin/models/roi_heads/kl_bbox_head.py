r"""RoI box head with a per-coordinate uncertainty branch, trained with the KL loss and
refined at test time by variance voting (He et al., CVPR 2019,
https://arxiv.org/abs/1809.08545; reference https://github.com/yihui-he/KL-Loss).

In a stock Faster R-CNN config::

    custom_imports = dict(imports=['detloss_plugin'], allow_failed_imports=False)
    model = dict(
        roi_head=dict(bbox_head=dict(
            type='detloss_plugin.KLBBoxHead',
            loss_bbox=dict(_delete_=True, type='detloss_plugin.KLLoss', beta=1.0,
                           loss_weight=1.0))),
        test_cfg=dict(rcnn=dict(var_voting=dict(sigma_t=0.01))))   # optional

The space of the variance
-------------------------
The branch predicts :math:`\alpha = \log\sigma^2` for each of the four numbers the box
branch regresses, i.e. in the space of the **encoded deltas** of the head's box coder
(mmdet's ``DeltaXYWHBBoxCoder``: :math:`(d_x, d_y, d_w, d_h)` divided by
``target_stds`` = 0.1, 0.1, 0.2, 0.2), for the same class as the box (per class, or
class-agnostic with ``reg_class_agnostic=True``, as the box branch). The KL loss is
computed there, against the encoded targets.

At inference the standard deviation is mapped to image coordinates
:math:`(x_1, y_1, x_2, y_2)` by first-order propagation through the decoder (the delta
method), treating the four deltas as independent as the loss does. With the proposal's
width :math:`w_p`, the decoded width :math:`w = w_p e^{s_w d_w}` and the coder's
``target_stds`` :math:`s`:

.. math::
    \sigma_{x_1}^2 = \sigma_{x_2}^2 = (s_x w_p\, \sigma_{d_x})^2
                                     + (\tfrac{1}{2} s_w w\, \sigma_{d_w})^2

and the same for :math:`y` with heights. Rescaled to the original image like the boxes
(``rescale=True``). The clamp of :math:`d_w` (``wh_ratio_clip``) and the clipping to
the image border are ignored in this derivative. Only ``DeltaXYWHBBoxCoder`` is
supported. The paper regresses the four corners (offsets normalised by the proposal
size), where the map is linear and the four variances are those of the corners
themselves; with mmdet's centre-size deltas :math:`x_1` and :math:`x_2` share their
uncertainty (the propagation gives them the same variance).

Predictions
-----------
``pred_instances`` get a field ``bboxes_std`` (``Tensor[n, 4]``, the standard deviation
of ``x1, y1, x2, y2`` in the coordinates of ``bboxes``) next to ``bboxes``, ``scores``
and ``labels``; mmdet's evaluators read only the latter and ignore it. (mmdet's
``StandardRoIHead`` returns its own empty results, without the field, for an image
with no proposal at all.)

Var voting
----------
``test_cfg.rcnn.var_voting = dict(sigma_t=0.01)`` (or ``True``, for the default
``sigma_t``; an unknown key is an error) turns on
:func:`detloss_plugin.functional.var_voting` after NMS: the candidates are the boxes of
each class above ``score_thr`` (as mmdet's ``multiclass_nms``), NMS is
``test_cfg.rcnn.nms`` (``type='nms'`` or, as in the reference, ``type='soft_nms'`` with
``method='gaussian', sigma=0.5``), and the kept boxes (after the ``max_per_img`` cut)
are voted over all candidates of their class with the image-space variances. One call
per image, all classes at once. Absent, ``None`` or ``False``: off (the boxes are
NMS's). A standard deviation that overflows (log-variance above about 177 in float32)
is Inf: such a candidate has no say in the vote.

Departures:
    * mmdet's centre-size deltas instead of the paper's corner offsets (the head works
      with the stock coder; the variance is mapped to the corners as above).
    * Voting uses image-space variances and the paper's Algorithm 1 (see
      :mod:`detloss_plugin.functional.var_voting`).
    * The reference counts the KL loss's :math:`e^{-\alpha}S` term twice in its logged
      loss; detloss once (same gradients; :func:`detloss_plugin.functional.kl_loss`).
"""
import math
from typing import Optional, Tuple

import torch
from mmcv.ops import batched_nms
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
from mmengine.structures import InstanceData
from torch import Tensor, nn

from detloss_plugin.functional import var_voting
from detloss_plugin.functional._checks import check_positive
from detloss_plugin.registry import MODELS
from ..losses.kl_loss import KLLoss

__all__ = ['KLBBoxHead', 'delta_std_to_box_std', 'var_voting_options']


def delta_std_to_box_std(rois: Tensor, deltas: Tensor, delta_std: Tensor,
                         target_stds, wh_ratio_clip: float = 16 / 1000,
                         target_means=(0., 0., 0., 0.)) -> Tensor:
    r"""Standard deviation of the decoded ``(x1, y1, x2, y2)`` of mmdet's
    ``DeltaXYWHBBoxCoder``, by first-order propagation (see the module docstring).

    Args:
        rois: ``Tensor[n, 4]`` proposals ``(x1, y1, x2, y2)``.
        deltas: ``Tensor[n, 4]`` encoded deltas (normalised by ``target_stds``).
        delta_std: ``Tensor[n, 4]`` standard deviation of each encoded delta.
        target_stds, target_means: the coder's.

    Returns:
        ``Tensor[n, 4]``.
    """
    stds = deltas.new_tensor(target_stds)
    means = deltas.new_tensor(target_means)
    max_ratio = abs(math.log(wh_ratio_clip))
    dwh = (deltas[:, 2:] * stds[2:] + means[2:]).clamp(-max_ratio, max_ratio)
    pwh = rois[:, 2:] - rois[:, :2]
    gwh = pwh * dwh.exp()
    var_xy = (pwh * stds[:2] * delta_std[:, :2]).square() \
        + (0.5 * gwh * stds[2:] * delta_std[:, 2:]).square()
    std_xy = var_xy.sqrt()
    return torch.cat([std_xy, std_xy], dim=-1)


VAR_VOTING_OPTIONS = ('sigma_t',)


def var_voting_options(value) -> Optional[dict]:
    """The keyword arguments of :func:`~detloss_plugin.functional.var_voting` that
    ``test_cfg.rcnn.var_voting`` asks for, or None when voting is off.

    ``None`` or ``False``: off. ``True``: on with the defaults (``sigma_t=0.01``). A
    dict: on, with its options (``sigma_t``); an unknown key is an error, not ignored.
    """
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f'test_cfg.rcnn.var_voting must be None, a bool or a dict of '
                        f'options {VAR_VOTING_OPTIONS}, got {type(value).__name__} {value!r}')
    unknown = sorted(set(value) - set(VAR_VOTING_OPTIONS))
    if unknown:
        raise ValueError(f'test_cfg.rcnn.var_voting got unknown option(s) {unknown}; its '
                         f'options are {VAR_VOTING_OPTIONS}')
    return dict(value)


@MODELS.register_module()
class KLBBoxHead(Shared2FCBBoxHead):
    """``Shared2FCBBoxHead`` with an ``fc_log_var`` branch (alpha = log sigma^2 per
    regressed coordinate) next to ``fc_reg``, trained with
    :class:`~detloss_plugin.KLLoss`, with variance voting at test time.

    ``bbox_pred`` as returned by :meth:`forward` is the deltas and the log-variances
    concatenated along the last dimension (``Tensor[n, 2 * R]``, ``R = 4`` or
    ``4 * num_classes``), so that mmdet's ``StandardRoIHead`` passes both through
    unchanged; :meth:`split_bbox_pred` separates them.

    Args:
        log_var_init_std: standard deviation (a finite number >= 0) of the Gaussian
            that initialises the weights of ``fc_log_var`` (bias 0): 1e-4, the paper's
            and the reference's (``gauss_fill(0.0001)``), so that alpha starts near 0
            and the loss near Smooth L1. Applied at construction and, when
            ``init_cfg`` is None, again by ``init_weights``.
        loss_bbox: must build a :class:`~detloss_plugin.KLLoss`.
        Other arguments: as ``Shared2FCBBoxHead``. ``reg_decoded_bbox`` must be False
        (the loss is on encoded deltas) and ``bbox_coder`` a ``DeltaXYWHBBoxCoder``.
    """

    def __init__(self, *args, log_var_init_std: float = 1e-4,
                 loss_bbox: dict = dict(type='detloss_plugin.KLLoss', beta=1.0,
                                        loss_weight=1.0),
                 **kwargs) -> None:
        user_init_cfg = kwargs.get('init_cfg')
        super().__init__(*args, loss_bbox=loss_bbox, **kwargs)
        if not self.with_reg:
            raise ValueError('KLBBoxHead needs with_reg=True (it predicts the variance of '
                             'the box regression)')
        if self.reg_decoded_bbox:
            raise ValueError('KLBBoxHead: reg_decoded_bbox must be False, the KL loss is '
                             'computed on the encoded deltas')
        if not isinstance(self.loss_bbox, KLLoss):
            raise TypeError(
                f"KLBBoxHead: loss_bbox must be detloss_plugin.KLLoss (it takes the "
                f"log-variance), got {type(self.loss_bbox).__name__}; in a config that "
                f"inherits one, write loss_bbox=dict(_delete_=True, "
                f"type='detloss_plugin.KLLoss')")
        if not isinstance(self.bbox_coder, DeltaXYWHBBoxCoder):
            raise TypeError(f'KLBBoxHead maps the variance to image coordinates for '
                            f'DeltaXYWHBBoxCoder only, got {type(self.bbox_coder).__name__}')
        check_positive('log_var_init_std', log_var_init_std, allow_zero=True)
        box_dim = self.bbox_coder.encode_size
        self.reg_dim = box_dim if self.reg_class_agnostic else box_dim * self.num_classes
        self.fc_log_var = nn.Linear(self.reg_last_dim, self.reg_dim)
        nn.init.normal_(self.fc_log_var.weight, 0.0, log_var_init_std)
        nn.init.zeros_(self.fc_log_var.bias)
        self.log_var_init_std = log_var_init_std
        if user_init_cfg is None:
            self.init_cfg.append(dict(type='Normal', std=log_var_init_std, bias=0.0,
                                      override=dict(name='fc_log_var')))

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tuple[Tensor]) -> tuple:
        """As ``ConvFCBBoxHead.forward``; ``bbox_pred`` is ``cat([deltas, log_var], -1)``."""
        for conv in self.shared_convs:
            x = conv(x)
        if self.num_shared_fcs > 0:
            if self.with_avg_pool:
                x = self.avg_pool(x)
            x = x.flatten(1)
            for fc in self.shared_fcs:
                x = self.relu(fc(x))
        x_cls = self._branch(x, self.cls_convs, self.cls_fcs)
        x_reg = self._branch(x, self.reg_convs, self.reg_fcs)
        cls_score = self.fc_cls(x_cls) if self.with_cls else None
        bbox_pred = torch.cat([self.fc_reg(x_reg), self.fc_log_var(x_reg)], dim=-1)
        return cls_score, bbox_pred

    def _branch(self, x: Tensor, convs, fcs) -> Tensor:
        for conv in convs:
            x = conv(x)
        if x.dim() > 2:
            if self.with_avg_pool:
                x = self.avg_pool(x)
            x = x.flatten(1)
        for fc in fcs:
            x = self.relu(fc(x))
        return x

    def split_bbox_pred(self, bbox_pred: Tensor) -> Tuple[Tensor, Tensor]:
        """``(deltas, log_var)``, each ``Tensor[n, R]``, from :meth:`forward`'s output."""
        if bbox_pred.shape[-1] != 2 * self.reg_dim:
            raise ValueError(f'bbox_pred must have {2 * self.reg_dim} channels (deltas and '
                             f'log-variances), got shape {tuple(bbox_pred.shape)}')
        # contiguous: mmdet's decoding views the deltas as (-1, 4)
        return (bbox_pred[..., :self.reg_dim].contiguous(),
                bbox_pred[..., self.reg_dim:].contiguous())

    # --------------------------------------------------------------------- loss
    def loss(self, cls_score: Tensor, bbox_pred: Tensor, rois: Tensor, labels: Tensor,
             label_weights: Tensor, bbox_targets: Tensor, bbox_weights: Tensor,
             reduction_override: Optional[str] = None) -> dict:
        """mmdet's classification loss, and the KL loss on the positive RoIs' deltas of
        their class, normalised by the number of sampled RoIs (``avg_factor``, as
        ``BBoxHead.loss``). Also logs ``log_var`` (mean alpha over the positives).
        Without RoIs or without positives the box loss is 0, with the graph kept (as
        mmdet's ``Shared2FCBBoxHead``)."""
        losses = super().loss(cls_score, None, rois, labels, label_weights, bbox_targets,
                              bbox_weights, reduction_override)
        if bbox_pred is None:
            return losses
        deltas, log_var = self.split_bbox_pred(bbox_pred)
        pos = (labels >= 0) & (labels < self.num_classes)
        n = bbox_pred.size(0)
        box_dim = self.bbox_coder.encode_size
        # explicit sizes, no -1: a view of 0 RoIs cannot infer one
        if self.reg_class_agnostic:
            pos_deltas = deltas.view(n, box_dim)[pos]
            pos_log_var = log_var.view(n, box_dim)[pos]
        else:
            pos_labels = labels[pos]
            pos_deltas = deltas.view(n, self.num_classes, box_dim)[pos, pos_labels]
            pos_log_var = log_var.view(n, self.num_classes, box_dim)[pos, pos_labels]
        losses['loss_bbox'] = self.loss_bbox(
            pos_deltas, pos_log_var, bbox_targets[pos], bbox_weights[pos],
            avg_factor=bbox_targets.size(0), reduction_override=reduction_override)
        losses['log_var'] = pos_log_var.detach().sum() / max(pos_log_var.numel(), 1)
        return losses

    def regress_by_class(self, priors: Tensor, label: Tensor, bbox_pred: Tensor,
                         img_meta: dict) -> Tensor:
        """As ``BBoxHead.regress_by_class`` (Cascade R-CNN), on the deltas only. Cascade
        R-CNN with this head is not tested."""
        return super().regress_by_class(priors, label, self.split_bbox_pred(bbox_pred)[0],
                                        img_meta)

    # ---------------------------------------------------------------- inference
    def _predict_by_feat_single(self, roi: Tensor, cls_score: Tensor, bbox_pred: Tensor,
                                img_meta: dict, rescale: bool = False,
                                rcnn_test_cfg=None) -> InstanceData:
        """mmdet's decoding and rescaling, then the image-space std (``bboxes_std``),
        then NMS and, if ``rcnn_test_cfg.var_voting`` is set, variance voting."""
        deltas = log_var = None
        if bbox_pred is not None:
            deltas, log_var = self.split_bbox_pred(bbox_pred)
        if roi.shape[0] == 0 or bbox_pred is None:
            results = super()._predict_by_feat_single(roi, cls_score, deltas, img_meta,
                                                      rescale, rcnn_test_cfg)
            results.bboxes_std = torch.zeros_like(results.bboxes)
            return results
        # decoded (and rescaled) boxes, per-class scores, no NMS
        results = super()._predict_by_feat_single(roi, cls_score, deltas, img_meta,
                                                  rescale, None)
        std = self._box_std(roi, deltas, log_var, img_meta, rescale)
        if rcnn_test_cfg is None:  # test-time augmentation: raw results, merged later
            results.bboxes_std = std
            return results
        return self._nms_and_vote(results.bboxes, results.scores, std, rcnn_test_cfg)

    def _box_std(self, roi: Tensor, deltas: Tensor, log_var: Tensor, img_meta: dict,
                 rescale: bool) -> Tensor:
        """``Tensor[n, R]``: std of (x1, y1, x2, y2) per RoI (and class) in the
        coordinates of the returned boxes."""
        n = roi.size(0)
        per_roi = self.reg_dim // 4
        rois = roi[:, 1:].repeat_interleave(per_roi, dim=0)
        delta_std = (0.5 * log_var.float()).exp().reshape(-1, 4)
        std = delta_std_to_box_std(rois.float(), deltas.float().reshape(-1, 4), delta_std,
                                   self.bbox_coder.stds, target_means=self.bbox_coder.means)
        if rescale:
            sx, sy = img_meta['scale_factor'][:2]
            std = std / std.new_tensor([sx, sy, sx, sy])
        return std.view(n, -1)

    def _nms_and_vote(self, bboxes: Tensor, scores: Tensor, std: Tensor,
                      cfg) -> InstanceData:
        """``multiclass_nms`` (score threshold, class-wise NMS, ``max_per_img``) that
        also carries the std, then var voting when configured."""
        vote_cfg = var_voting_options(cfg.get('var_voting', None))  # checked first
        num_classes = scores.size(1) - 1
        n = scores.size(0)
        boxes = bboxes.view(n, -1, 4).expand(n, num_classes, 4)
        std = std.view(n, -1, 4).expand(n, num_classes, 4)
        scores = scores[:, :-1]
        labels = torch.arange(num_classes, device=scores.device).view(1, -1).expand_as(scores)
        boxes, std = boxes.reshape(-1, 4), std.reshape(-1, 4)
        scores, labels = scores.reshape(-1), labels.reshape(-1)
        inds = (scores > cfg.score_thr).nonzero().squeeze(1)
        boxes, std, scores, labels = boxes[inds], std[inds], scores[inds], labels[inds]

        results = InstanceData()
        if boxes.numel() == 0:
            results.bboxes = boxes.new_zeros((0, 4))
            results.scores = scores.new_zeros((0,))
            results.labels = labels.new_zeros((0,))
            results.bboxes_std = std.new_zeros((0, 4))
            return results
        dets, keep = batched_nms(boxes, scores, labels, cfg.nms)
        if cfg.max_per_img > 0:
            dets, keep = dets[:cfg.max_per_img], keep[:cfg.max_per_img]
        if vote_cfg is not None:
            voted = var_voting(boxes, scores, std.square(), keep, idxs=labels, **vote_cfg)
            results.bboxes = voted[:, :4]
        else:
            results.bboxes = dets[:, :4]
        results.scores = dets[:, -1]
        results.labels = labels[keep]
        results.bboxes_std = std[keep]
        return results
