"""The ``ranking`` benchmark suite (tools/benchmarks/ranking.py) at toy sizes: it follows
the suite contract (Measurements with label / sub_label / description, ``extras``), and
its transcriptions of the reference codes agree with detloss's losses."""
import importlib.util
import os.path as osp
from types import SimpleNamespace

import pytest
import torch

from _tools_helpers import REPO


@pytest.fixture(scope='module')
def suite():
    path = osp.join(REPO, 'tools', 'benchmarks', 'ranking.py')
    spec = importlib.util.spec_from_file_location('ranking_suite', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tiny = dict(anchors=300, classes=5, positives=12)
    module.QUICK = tiny
    return module


def test_run_returns_measurements(suite, monkeypatch):
    monkeypatch.setattr(suite.benchmark.Timer, 'blocked_autorange',
                        lambda self, min_run_time: self.timeit(2))
    args = SimpleNamespace(device='cpu', threads=[1], quick=True)
    results = suite.run(args)
    contenders = [m.description for m in results]
    assert contenders == ['detloss ap_loss', 'detloss ap_loss, torch path (accelerators)',
                          'reference loop (cccorn/AP-loss)', 'detloss dr_loss',
                          'reference (idstcv/DR_loss)', 'detloss rank_sort_loss',
                          'reference loop (kemaloksuz/RankSortLoss)', 'detloss alrp_loss',
                          'reference loop (kemaloksuz/aLRPLoss)']
    assert [m.metadata['ref'] for m in results] == [True, False, False, True, False, True,
                                                    False, True, False]
    assert all(m.label == 'ranking' and m.median > 0 for m in results)
    assert results[0].sub_label == 'AP-loss fwd+bwd (300 x 5, 12 positives)'


def test_references_agree_with_detloss(suite):
    out = suite.extras(SimpleNamespace(device='cpu', threads=[1], quick=True))
    assert out['ap_loss_grad_max_abs'] > 0 and out['dr_loss_grad_max_abs'] > 0
    assert out['ap_loss_grad_max_abs_diff'] < 1e-5 * out['ap_loss_grad_max_abs']
    assert out['dr_loss_grad_max_abs_diff'] < 1e-5 * out['dr_loss_grad_max_abs']
    assert out['ap_loss_value_abs_diff'] < 1e-6 and out['dr_loss_value_abs_diff'] < 1e-6
    for name in ('rank_sort', 'alrp'):
        assert out[f'{name}_grad_max_abs'] > 0
        assert out[f'{name}_grad_max_abs_diff'] < 1e-5 * out[f'{name}_grad_max_abs']
        assert out[f'{name}_value_abs_diff'] < 1e-5


def test_reference_transcription_is_the_algorithm(suite):
    # the transcribed reference loop against detloss in float32, on a case with ties
    logits, labels, weights, ap_targets, _ = suite.make_case(
        dict(anchors=40, classes=3, positives=6), 'cpu', seed=3)
    logits = logits.round(decimals=0)
    grad_ref, loss_ref = suite.reference_ap_loss(logits, ap_targets)
    from detloss_plugin.functional import ap_loss
    x = logits.clone().requires_grad_(True)
    loss = ap_loss(x, labels, weights)
    loss.backward()
    assert loss.item() == pytest.approx(loss_ref.item(), abs=1e-6)
    torch.testing.assert_close(x.grad, grad_ref, atol=1e-6, rtol=0)
