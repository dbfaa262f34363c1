"""Degenerate input, bad options and state of the KL loss, variance voting, the KL box
head, Cluster-DIoU-NMS, Wise-IoU and the option checks shared by the functional core.

The standard: valid-but-degenerate input never gives NaN, NaN input stays NaN, bad input
gets an error naming the argument.
"""
import functools

import pytest
import torch

from detloss_plugin import functional as dlf
from detloss_plugin.functional import _checks

F64 = torch.float64
NAN, INF = float('nan'), float('inf')
NON_FINITE = [NAN, INF, -INF]
TWO_BOXES = torch.tensor([[0., 0, 10, 10], [1, 1, 11, 11]])
TWO_SCORES = torch.tensor([0.9, 0.8])


def _mmdet_scope():
    from mmengine.registry import init_default_scope

    import detloss_plugin  # noqa: F401  (registers the modules)
    init_default_scope('mmdet')


# ------------------------------------------------------------------ shared checks
@pytest.mark.parametrize('value', NON_FINITE)
@pytest.mark.parametrize('allow_zero', [False, True])
def test_check_positive_refuses_nan_and_inf(value, allow_zero):
    with pytest.raises(ValueError, match=r'opt must be a finite number'):
        _checks.check_positive('opt', value, allow_zero=allow_zero)


@pytest.mark.parametrize('value', NON_FINITE)
def test_check_finite_refuses_nan_and_inf(value):
    with pytest.raises(ValueError, match='opt must be a finite number'):
        _checks.check_finite('opt', value)
    with pytest.raises(TypeError, match='opt must be a number'):
        _checks.check_finite('opt', True)
    assert _checks.check_finite('opt', -2) is None


BOXES = torch.tensor([[0., 0, 4, 4], [1, 1, 6, 5]])
TARGETS = torch.tensor([[0.5, 0, 4, 5], [1, 2, 6, 6]])


def _vote(**kw):
    return dlf.var_voting(TWO_BOXES, TWO_SCORES, torch.ones(2, 4), torch.tensor([0]), **kw)


# (name of the option in the message, a call with that option set to the value)
FUNCTIONAL_OPTIONS = {
    'kl beta': ('beta', lambda v: dlf.kl_loss(BOXES, torch.zeros(2, 4), TARGETS, beta=v)),
    'var_voting sigma_t': ('sigma_t', lambda v: _vote(sigma_t=v)),
    'siou theta': ('theta', lambda v: dlf.siou_loss(BOXES, TARGETS, theta=v)),
    'siou eps': ('eps', lambda v: dlf.siou_loss(BOXES, TARGETS, eps=v)),
    'alpha-iou alpha': ('alpha', lambda v: dlf.alpha_iou_loss(BOXES, TARGETS, alpha=v)),
    'wiou alpha': ('alpha', lambda v: dlf.wiou_loss(BOXES, TARGETS, iou_mean=0.5, alpha=v)),
    'wiou delta': ('delta', lambda v: dlf.wiou_loss(BOXES, TARGETS, iou_mean=0.5, delta=v)),
    'wiou gamma': ('gamma', lambda v: dlf.wiou_loss(BOXES, TARGETS, 'v2', 0.5, gamma=v)),
    'wiou iou_mean': ('iou_mean', lambda v: dlf.wiou_loss(BOXES, TARGETS, iou_mean=v)),
    'wiou momentum': ('momentum', lambda v: dlf.wiou_running_mean(
        BOXES, TARGETS, torch.tensor(1.0), momentum=v)),
    'cluster iou_threshold': ('iou_threshold', lambda v: dlf.cluster_diou_nms(
        BOXES, TWO_SCORES, v)),
    'cluster beta': ('beta', lambda v: dlf.cluster_diou_nms(BOXES, TWO_SCORES, 0.5, beta=v)),
    'weighted iou_threshold': ('iou_threshold', lambda v: dlf.weighted_cluster_diou_nms(
        BOXES, TWO_SCORES, v)),
    'weighted beta': ('beta', lambda v: dlf.weighted_cluster_diou_nms(
        BOXES, TWO_SCORES, 0.5, beta=v)),
    'weighted weight_threshold': ('weight_threshold', lambda v: dlf.weighted_cluster_diou_nms(
        BOXES, TWO_SCORES, 0.5, weight_threshold=v)),
    # the same shared check serves the other losses of the functional core
    'smooth_l1 beta': ('beta', lambda v: dlf.smooth_l1_loss(BOXES, TARGETS, beta=v)),
    'focal_l1 alpha': ('alpha', lambda v: dlf.focal_l1_loss(BOXES, TARGETS, alpha=v)),
    'focal_eiou gamma': ('gamma', lambda v: dlf.focal_eiou_loss(BOXES, TARGETS, gamma=v)),
}


@pytest.mark.parametrize('value', NON_FINITE, ids=['nan', 'inf', '-inf'])
@pytest.mark.parametrize('case', sorted(FUNCTIONAL_OPTIONS))
def test_functional_options_refuse_nan_and_inf(case, value):
    name, call = FUNCTIONAL_OPTIONS[case]
    with pytest.raises(ValueError, match=rf'\b{name}\b'):
        call(value)


MODULE_OPTIONS = [
    ('KLLoss', 'beta'), ('SIoULoss', 'theta'), ('AlphaIoULoss', 'alpha'),
    ('WIoULoss', 'alpha'), ('WIoULoss', 'delta'), ('WIoULoss', 'gamma'),
    ('WIoULoss', 'momentum'), ('WIoULoss', 'eps'), ('FocalEIoULoss', 'gamma'),
    ('GIoULoss', 'eps'), ('SmoothL1Loss', 'beta'),
]


@pytest.mark.parametrize('value', NON_FINITE, ids=['nan', 'inf', '-inf'])
@pytest.mark.parametrize('cls_name, option', MODULE_OPTIONS)
def test_module_options_refuse_nan_and_inf(cls_name, option, value):
    from detloss_plugin.models import losses
    with pytest.raises(ValueError, match=rf'\b{option}\b'):
        getattr(losses, cls_name)(**{option: value})


# ------------------------------------------------------------------------ KL loss
@pytest.mark.parametrize('dtype', [torch.float32, F64, torch.float16])
@pytest.mark.parametrize('alpha', [-89.0, -200.0, -1000.0])
@pytest.mark.parametrize('beta', [1.0, 0.0])
def test_kl_exact_prediction_with_tiny_variance_is_finite(dtype, alpha, beta):
    """x_e = x_g: L = e^-alpha * 0 + alpha / 2 exactly, dL/dalpha = 1/2, dL/dx_e = 0,
    however large e^-alpha is (e^89 overflows float32, e^1000 float64)."""
    if dtype == torch.float16 and alpha < -600:
        alpha = -60000.0
    t = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)).to(dtype)
    pred = t.clone().requires_grad_()
    log_var = torch.full((3, 4), alpha, dtype=dtype, requires_grad=True)
    loss = dlf.kl_loss(pred, log_var, t, beta=beta)
    assert torch.equal(loss, torch.full_like(loss, alpha / 2))
    loss.sum().backward()
    assert torch.equal(log_var.grad, torch.full_like(log_var, 0.5))
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_kl_nan_input_stays_nan():
    t = torch.zeros(2, 4)
    log_var = torch.full((2, 4), -100.0)
    log_var[0, 1] = NAN
    pred = t.clone()
    pred[1, 2] = NAN
    loss = dlf.kl_loss(pred, log_var, t)
    assert torch.isnan(loss[0, 1]) and torch.isnan(loss[1, 2])
    assert torch.isnan(loss).sum() == 2


# -------------------------------------------------------------------- var voting
def test_var_voting_infinite_variances_give_finite_boxes():
    # every candidate infinitely uncertain: nothing to vote with, the kept box stays
    dets = dlf.var_voting(TWO_BOXES, TWO_SCORES, torch.full((2, 4), INF), torch.tensor([0]))
    assert torch.equal(dets, torch.tensor([[0., 0, 10, 10, 0.9]]))
    # an infinitely uncertain candidate does not vote (weight 1 / sigma^2 = 0) ...
    variances = torch.ones(2, 4)
    variances[1] = INF
    dets = dlf.var_voting(TWO_BOXES, TWO_SCORES, variances, torch.tensor([0]))
    assert torch.equal(dets[0, :4], TWO_BOXES[0])
    # ... also when it is the kept box: the finite candidate decides
    dets = dlf.var_voting(TWO_BOXES, TWO_SCORES, variances.flip(0), torch.tensor([0]))
    assert torch.allclose(dets[0, :4], TWO_BOXES[1])
    # per coordinate: only x1's variance is infinite everywhere
    variances = torch.ones(2, 4)
    variances[:, 0] = INF
    dets = dlf.var_voting(TWO_BOXES, TWO_SCORES, variances, torch.tensor([0]))
    assert dets[0, 0] == 0 and torch.isfinite(dets).all() and dets[0, 1] > 0


def test_var_voting_infinite_variance_gradient_is_finite():
    boxes = TWO_BOXES.to(F64).requires_grad_()
    variances = torch.full((2, 4), INF, dtype=F64)
    dets = dlf.var_voting(boxes, TWO_SCORES.to(F64), variances, torch.tensor([0]))
    dets[:, :4].sum().backward()
    assert torch.isfinite(boxes.grad).all()


def test_var_voting_refuses_negative_variance_and_accepts_zero():
    variances = torch.ones(2, 4)
    variances[1, 2] = -1e-3
    with pytest.raises(ValueError, match='variances'):
        dlf.var_voting(TWO_BOXES, TWO_SCORES, variances, torch.tensor([0]))
    # zero (a standard deviation that underflowed): the certain candidate wins
    variances[1, 2] = 0.0
    dets = dlf.var_voting(TWO_BOXES, TWO_SCORES, variances, torch.tensor([0]))
    assert dets[0, 2] == TWO_BOXES[1, 2]


@pytest.mark.parametrize('keep', [[-1], [2], [0, 5]])
def test_var_voting_refuses_out_of_range_keep(keep):
    with pytest.raises(ValueError, match='keep'):
        dlf.var_voting(TWO_BOXES, TWO_SCORES, torch.ones(2, 4), torch.tensor(keep))


def test_var_voting_mixed_dtypes():
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(12, 2, generator=g, dtype=F64) * 20
    boxes = torch.cat([xy, xy + 10 + torch.rand(12, 2, generator=g, dtype=F64) * 5], 1)
    variances = torch.rand(12, 4, generator=g, dtype=F64) + 0.1
    scores = torch.rand(12, generator=g, dtype=F64)
    keep = torch.tensor([0, 3, 7])
    ref = dlf.var_voting(boxes.float().double(), scores, variances, keep, sigma_t=0.5)
    got = dlf.var_voting(boxes.float(), scores.float(), variances, keep, sigma_t=0.5)
    assert got.dtype == torch.float32
    assert torch.allclose(got.double(), ref, atol=1e-5)
    got = dlf.var_voting(boxes, scores, variances.float(), keep, sigma_t=0.5)
    assert got.dtype == F64
    ref = dlf.var_voting(boxes, scores, variances.float().double(), keep, sigma_t=0.5)
    assert torch.allclose(got, ref, rtol=1e-12)


# -------------------------------------------------------------------- KLBBoxHead
def _kl_head(**kwargs):
    _mmdet_scope()
    from mmdet.registry import MODELS
    cfg = dict(type='detloss_plugin.KLBBoxHead', in_channels=4, fc_out_channels=16,
               roi_feat_size=2, num_classes=3)
    cfg.update(kwargs)
    return MODELS.build(cfg)


@pytest.mark.parametrize('agnostic', [False, True])
def test_kl_head_loss_without_rois_is_zero_like_mmdets_head(agnostic):
    from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
    head = _kl_head(reg_class_agnostic=agnostic)
    stock = Shared2FCBBoxHead(in_channels=4, fc_out_channels=16, roi_feat_size=2,
                              num_classes=3, reg_class_agnostic=agnostic)
    x = torch.zeros(0, 4, 2, 2)
    cls_score, bbox_pred = head(x)
    stock_cls, stock_pred = stock(x)
    args = (torch.zeros(0, 5), torch.zeros(0, dtype=torch.long), torch.zeros(0),
            torch.zeros(0, 4), torch.zeros(0, 4))
    ours = head.loss(cls_score, bbox_pred, *args)
    theirs = stock.loss(stock_cls, stock_pred, *args)
    assert ours['loss_bbox'].item() == theirs['loss_bbox'].item() == 0.0
    assert ours['log_var'].item() == 0.0
    assert set(ours) == set(theirs) | {'log_var'}   # mmdet skips loss_cls for 0 RoIs
    ours['loss_bbox'].backward()   # graph connected
    assert head.fc_log_var.weight.grad is not None


def test_kl_head_refuses_non_finite_init_std():
    for bad in NON_FINITE + [-1e-4]:
        with pytest.raises(ValueError, match='log_var_init_std'):
            _kl_head(log_var_init_std=bad)
    with pytest.raises(TypeError, match='log_var_init_std'):
        _kl_head(log_var_init_std='1e-4')


def _predict(head, test_cfg, log_var_scale=1.0, n=30):
    from mmengine.config import ConfigDict
    torch.manual_seed(1)
    xy = torch.rand(n, 2) * 40
    roi = torch.cat([torch.zeros(n, 1), xy, xy + 10 + torch.rand(n, 2) * 20], dim=1)
    cls_score = torch.randn(n, 4) * 2
    bbox_pred = torch.cat([torch.randn(n, 12) * 0.5, torch.randn(n, 12) * log_var_scale], 1)
    meta = dict(img_shape=(80, 80), scale_factor=(2.0, 0.5))
    cfg = ConfigDict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=20,
                     **test_cfg)
    return head._predict_by_feat_single(roi, cls_score, bbox_pred, meta, True, cfg)


def test_kl_head_var_voting_true_is_the_default_sigma():
    head = _kl_head()
    plain = _predict(head, dict(var_voting=dict(sigma_t=0.01)))
    on = _predict(head, dict(var_voting=True))
    assert torch.equal(on.bboxes, plain.bboxes) and torch.equal(on.scores, plain.scores)
    off = _predict(head, dict())
    for disabled in (False, None):
        got = _predict(head, dict(var_voting=disabled))
        assert torch.equal(got.bboxes, off.bboxes)
    wide = _predict(head, dict(var_voting=dict(sigma_t=1.0)))
    assert not torch.equal(off.bboxes, wide.bboxes)


def test_kl_head_var_voting_names_unknown_keys_and_bad_values():
    head = _kl_head()
    with pytest.raises(ValueError, match=r"sigmat.*sigma_t"):
        _predict(head, dict(var_voting=dict(sigmat=0.05)))
    with pytest.raises(TypeError, match='var_voting'):
        _predict(head, dict(var_voting='yes'))
    with pytest.raises(ValueError, match='sigma_t'):
        _predict(head, dict(var_voting=dict(sigma_t=NAN)))


def test_kl_head_var_voting_with_overflowing_std_gives_finite_boxes():
    """log-variances around 400: exp(alpha / 2) overflows float32, the std is Inf."""
    head = _kl_head()
    dets = _predict(head, dict(var_voting=dict(sigma_t=1.0)), log_var_scale=400.0)
    assert len(dets) > 0 and torch.isinf(dets.bboxes_std).any()
    assert torch.isfinite(dets.bboxes).all()


# ---------------------------------------------------------------- Cluster-DIoU-NMS
def test_cluster_nms_through_batched_nms_refuses_negative_threshold():
    """mmcv's batched_nms separates the classes by shifting their boxes apart; with a
    negative threshold a far-away box of another class would be suppressed."""
    _mmdet_scope()
    from mmcv.ops import batched_nms
    boxes = torch.tensor([[0., 0, 10, 10], [0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8])
    labels = torch.tensor([0, 1])
    for split_thr in (10000, 1):
        dets, keep = batched_nms(boxes, scores, labels,
                                 dict(type='cluster_diou_nms', iou_threshold=0.5,
                                      split_thr=split_thr))
        assert keep.tolist() == [0, 1]   # identical boxes of two classes: both kept
        with pytest.raises(ValueError, match='iou_threshold'):
            batched_nms(boxes, scores, labels, dict(type='cluster_diou_nms',
                                                    iou_threshold=-0.5, split_thr=split_thr))


@pytest.mark.parametrize('value', NON_FINITE, ids=['nan', 'inf', '-inf'])
def test_cluster_nms_adapter_refuses_non_finite_options(value):
    _mmdet_scope()
    from detloss_plugin.ops import cluster_diou_nms_mmcv
    with pytest.raises(ValueError, match='iou_threshold'):
        cluster_diou_nms_mmcv(BOXES, TWO_SCORES, value)
    with pytest.raises(ValueError, match='beta'):
        cluster_diou_nms_mmcv(BOXES, TWO_SCORES, 0.5, beta=value)
    with pytest.raises(ValueError, match='score_threshold'):
        cluster_diou_nms_mmcv(BOXES, TWO_SCORES, 0.5, score_threshold=value)


def test_weighted_cluster_nms_refuses_negative_scores():
    # IoU 90 / 110 = 9/11; with s = (0.9, -0.5) the merged x1 would be
    # (0.9 * 0 - 0.5 * 9/11 * 1) / (0.9 - 0.5 * 9/11) = -0.83, outside [0, 1], the hull
    boxes = torch.tensor([[0., 0, 10, 10], [1, 0, 11, 10]])
    with pytest.raises(ValueError, match='scores'):
        dlf.weighted_cluster_diou_nms(boxes, torch.tensor([0.9, -0.5]), 0.95,
                                    weight_threshold=0.5)
    # a zero score is allowed: that box adds nothing to the average (both boxes are kept:
    # DIoU 0.818 - 0.0017 < 0.95; the second box's own cluster weighs 0: it stays)
    keep, merged = dlf.weighted_cluster_diou_nms(boxes, torch.tensor([0.9, 0.0]), 0.95,
                                               weight_threshold=0.5)
    assert keep.tolist() == [0, 1] and torch.equal(merged, boxes)


# ------------------------------------------------------------------------ Wise-IoU
def _random_pairs(n, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=F64) * 50
    pred = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g, dtype=F64) * 20], 1)
    target = pred + torch.randn(n, 4, generator=g, dtype=F64)
    target[:, 2:] = torch.maximum(target[:, 2:], target[:, :2] + 1)
    return pred.to(dtype), target.to(dtype)


@pytest.mark.parametrize('bad', [NAN, INF, -INF])
def test_wiou_running_mean_skips_non_finite_boxes(bad):
    pred, target = _random_pairs(6)
    mean = torch.tensor(0.7)
    clean = dlf.wiou_running_mean(pred[1:], target[1:], mean, momentum=0.2)
    pred[0, 2] = bad
    assert torch.equal(dlf.wiou_running_mean(pred, target, mean, momentum=0.2), clean)
    target2 = target.clone()
    target2[0, 1] = bad                           # in the target instead
    assert torch.equal(dlf.wiou_running_mean(pred.nan_to_num(0), target2, mean, momentum=0.2),
                       dlf.wiou_running_mean(pred[1:], target[1:], mean, momentum=0.2))
    only_bad = dlf.wiou_running_mean(pred[:1], target[:1], mean, momentum=0.2)
    assert torch.equal(only_bad, mean)            # nothing valid: unchanged


def test_wiou_module_survives_a_nan_box():
    from detloss_plugin.models.losses import WIoULoss
    module = WIoULoss(momentum=0.1).train()
    pred, target = _random_pairs(8, seed=1)
    pred[3] = NAN
    loss = module(pred, target, reduction_override='none')
    assert torch.isnan(loss[3]) and torch.isfinite(loss[torch.arange(8) != 3]).all()
    assert torch.isfinite(module.iou_mean)
    later = module(*_random_pairs(8, seed=2))
    assert torch.isfinite(later)


@pytest.mark.parametrize('version', ['v2', 'v3'])
@pytest.mark.parametrize('mean', [-0.3, 0.0, 0, NAN, INF])
def test_wiou_loss_refuses_non_positive_mean(version, mean):
    with pytest.raises(ValueError, match='iou_mean'):
        dlf.wiou_loss(BOXES, TARGETS, version, iou_mean=mean)


def test_wiou_loss_negative_tensor_mean_gives_nan():
    """A tensor mean is not read on the host: a negative one shows as NaN, not as a
    plausible value; 0 (an underflowed mean) is clamped at eps as documented."""
    for version in ('v2', 'v3'):
        assert torch.isnan(dlf.wiou_loss(BOXES, TARGETS, version, torch.tensor(-0.3))).all()
        assert torch.isnan(dlf.wiou_loss(BOXES, TARGETS, version, torch.tensor(NAN))).all()
        zero = dlf.wiou_loss(BOXES, TARGETS, version, torch.tensor(0.0))
        assert torch.equal(zero, dlf.wiou_loss(BOXES, TARGETS, version, 1e-7))


@pytest.mark.parametrize('sync', ['no', 1, 0, None])
def test_wiou_sync_must_be_a_bool(sync):
    from detloss_plugin.models.losses import WIoULoss
    with pytest.raises(TypeError, match='sync'):
        WIoULoss(sync=sync)
    assert WIoULoss(sync=False).sync is False


def test_wiou_buffer_stays_float32_under_half():
    """(1 - 1e-4)^20 = 0.998002: a float16 mean (spacing 4.9e-4 below 1) would stay 1."""
    from detloss_plugin.models.losses import WIoULoss
    module = WIoULoss(momentum=1e-4).train().half()
    assert module.iou_mean.dtype == torch.float32
    boxes = torch.tensor([[0., 0, 10, 10]] * 4).half()
    for _ in range(20):
        module(boxes, boxes)
    assert module.iou_mean.dtype == torch.float32
    assert module.iou_mean.item() == pytest.approx((1 - 1e-4) ** 20, abs=1e-6)
    # device / dtype moves keep float32 (or wider); a float16 checkpoint loads as float32
    assert module.float().iou_mean.dtype == torch.float32
    assert module.double().iou_mean.dtype == F64
    fresh = WIoULoss().half()
    fresh.load_state_dict({'iou_mean': torch.tensor(0.25, dtype=torch.float16)})
    assert fresh.iou_mean.dtype == torch.float32 and fresh.iou_mean.item() == 0.25


def test_wiou_running_mean_keeps_float64():
    """Offsets of 1e-4 at coordinates of 1e4 vanish in float32 (spacing 1e-3)."""
    pred = torch.tensor([[1e4, 1e4, 1e4 + 10, 1e4 + 10 + 1e-4]], dtype=F64)
    target = torch.tensor([[1e4, 1e4, 1e4 + 10, 1e4 + 10]], dtype=F64)
    inter, union = 100.0, 100.0 + 10 * 1e-4
    expected = 1 - inter / (union + 1e-7)                       # momentum 1: the batch mean
    got = dlf.wiou_running_mean(pred, target, torch.tensor(1.0, dtype=F64), momentum=1.0)
    assert got.dtype == F64
    assert got.item() == pytest.approx(expected, rel=1e-6)


# -------------------------------------------------------------------- Focal-EIoU
def _focal_eiou_grad(pred, target, loss_fn):
    p = pred.clone().requires_grad_()
    loss_fn(p, target).sum().backward()
    return p.grad


def test_focal_eiou_module_detaches_the_weight_by_default():
    from detloss_plugin.models.losses import FocalEIoULoss
    assert FocalEIoULoss().detach_weight is True
    pred, target = _random_pairs(5, seed=4, dtype=F64)
    detached = _focal_eiou_grad(pred, target, functools.partial(dlf.focal_eiou_loss,
                                                                detach_weight=True))
    paper = _focal_eiou_grad(pred, target, dlf.focal_eiou_loss)
    assert not torch.allclose(detached, paper)    # the two forms differ in gradient
    module = FocalEIoULoss(reduction='sum')
    torch.testing.assert_close(_focal_eiou_grad(pred, target, module), detached)
    paper_module = FocalEIoULoss(detach_weight=False, reduction='sum')
    torch.testing.assert_close(_focal_eiou_grad(pred, target, paper_module), paper)
    # and the same value
    torch.testing.assert_close(module(pred, target), paper_module(pred, target))


# ---------------------------------------------------------------------------------------
# Greedy DIoU-NMS and the classification alpha: NaN / Inf options are refused too
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize('threshold', [float('nan'), float('inf'), -float('inf')])
def test_diou_nms_refuses_non_finite_threshold(threshold):
    from detloss_plugin.functional import batched_diou_nms, diou_nms
    boxes = torch.tensor([[0., 0, 10, 10], [1, 1, 11, 11]])
    scores = torch.tensor([0.9, 0.8])
    with pytest.raises(ValueError, match='iou_threshold'):
        diou_nms(boxes, scores, threshold)
    with pytest.raises(ValueError, match='iou_threshold'):
        batched_diou_nms(boxes, scores, torch.zeros(2, dtype=torch.long), threshold)


@pytest.mark.parametrize('score_threshold', [float('nan'), float('inf')])
def test_diou_nms_mmcv_refuses_non_finite_score_threshold(score_threshold):
    from detloss_plugin.ops import diou_nms_mmcv
    boxes = torch.tensor([[0., 0, 10, 10], [1, 1, 11, 11]])
    with pytest.raises(ValueError, match='score_threshold'):
        diou_nms_mmcv(boxes, torch.tensor([0.9, 0.8]), 0.5, score_threshold=score_threshold)


@pytest.mark.parametrize('alpha', [float('nan'), float('inf')])
def test_softmax_focal_refuses_non_finite_alpha(alpha):
    from detloss_plugin.functional import softmax_focal_loss
    with pytest.raises(ValueError, match='alpha'):
        softmax_focal_loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), alpha=alpha)
