"""The registered KLLoss: equals its function, mmdet's reduction contract, and the
reference's normalisation (mean over the sampled RoIs, sum over the 4 coordinates)."""
import math

import pytest
import torch

from detloss_plugin.functional import kl_loss
from detloss_plugin.models.losses import KLLoss
from detloss_plugin.registry import MODELS

F64 = torch.float64


def _inputs(n=10, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(n, 4, generator=g, dtype=dtype)
    target = torch.randn(n, 4, generator=g, dtype=dtype) * 2
    log_var = torch.randn(n, 4, generator=g, dtype=dtype) * 0.5
    return pred, log_var, target


def test_built_from_registry_and_equals_function():
    loss = MODELS.build(dict(type='detloss_plugin.KLLoss', beta=0.5, loss_weight=2.0, reduction='none'))
    assert isinstance(loss, KLLoss)
    pred, log_var, target = _inputs()
    assert torch.allclose(loss(pred, log_var, target), 2.0 * kl_loss(pred, log_var, target, 0.5))
    assert loss(pred, log_var, target, reduction_override='sum').item() == pytest.approx(
        2.0 * kl_loss(pred, log_var, target, 0.5).sum().item())


def test_avg_factor_equals_reference_normalisation():
    """The reference (Detectron): per-RoI, per-coordinate loss masked to the positives
    (inside/outside weights), ReduceMean over the RoI axis, SumElements over the
    coordinates. mmdet's BBoxHead passes the positives only, with avg_factor = number
    of sampled RoIs; KLLoss with reduction='mean' must give the same number."""
    n_rois, pos = 16, torch.tensor([1, 4, 5, 11])
    pred, log_var, target = _inputs(n_rois, seed=1)
    mask = torch.zeros(n_rois, 1, dtype=F64)
    mask[pos] = 1.0
    per_element = kl_loss(pred, log_var, target) * mask            # (16, 4), zero rows
    reference = per_element.mean(dim=0).sum()
    ours = KLLoss()(pred[pos], log_var[pos], target[pos], torch.ones(len(pos), 4, dtype=F64),
                    avg_factor=n_rois)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-6)


def test_weight_shapes_and_zero_weight_keeps_graph():
    pred, log_var, target = _inputs(6, seed=2)
    per = kl_loss(pred, log_var, target)
    w_box = torch.tensor([1.0, 0, 1, 0, 1, 1], dtype=F64)
    loss = KLLoss(reduction='sum')
    assert loss(pred, log_var, target, w_box).item() == pytest.approx(
        (per * w_box[:, None]).sum().item())
    w_el = torch.rand(6, 4, dtype=F64)
    assert loss(pred, log_var, target, w_el).item() == pytest.approx((per * w_el).sum().item())
    p = pred.clone().requires_grad_(True)
    lv = log_var.clone().requires_grad_(True)
    out = KLLoss()(p, lv, target, torch.zeros(6, dtype=F64), avg_factor=6)
    assert out.item() == 0.0
    out.backward()
    assert p.grad.abs().sum() == 0 and lv.grad.abs().sum() == 0
    with pytest.raises(ValueError, match='weight'):
        loss(pred, log_var, target, torch.ones(5, dtype=F64))


def test_empty_and_half():
    p = torch.zeros(0, 4, requires_grad=True)
    out = KLLoss()(p, torch.zeros(0, 4), torch.zeros(0, 4), avg_factor=8)
    assert out.item() == 0.0
    out.backward()
    pred, log_var, target = _inputs(5, seed=3, dtype=torch.float32)
    half = KLLoss()(pred.half(), log_var.half(), target.half())
    assert half.dtype == torch.float32  # detloss's modules reduce half precision in float32
    assert half.item() == pytest.approx(KLLoss()(pred, log_var, target).item(), rel=1e-2)


def test_bad_options_and_shapes():
    with pytest.raises(ValueError, match='beta'):
        KLLoss(beta=-0.1)
    with pytest.raises(ValueError, match='reduction'):
        KLLoss(reduction='avg')
    pred, log_var, target = _inputs(4, seed=4)
    with pytest.raises(ValueError, match='pred_log_var'):
        KLLoss()(pred, log_var[:, :2], target)
    with pytest.raises(ValueError, match='avg_factor'):
        KLLoss(reduction='sum')(pred, log_var, target, avg_factor=2.0)
    assert math.isfinite(KLLoss()(pred, log_var, target).item())
