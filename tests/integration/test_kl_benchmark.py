"""tools/benchmarks/kl.py follows the suite contract: run(args) returns labelled
torch.utils.benchmark Measurements that Compare can tabulate, and extras(args) shows the
batched and looped var voting agree."""
import importlib.util
import os.path as osp
import types

import pytest
import torch.utils.benchmark as benchmark

from _tools_helpers import REPO


def _suite():
    path = osp.join(REPO, 'tools', 'benchmarks', 'kl.py')
    spec = importlib.util.spec_from_file_location('detloss_bench_kl', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kl_suite_contract(monkeypatch):
    suite = _suite()
    monkeypatch.setattr(suite, 'LOSS_SIZES_QUICK', (64,))
    monkeypatch.setattr(suite, 'VOTE_SIZES_QUICK', (200,))
    monkeypatch.setattr(suite, 'NUM_KEPT', 10)
    args = types.SimpleNamespace(device='cpu', threads=[1], quick=True)
    results = suite.run(args)
    assert len(results) == 4
    assert all(isinstance(m, benchmark.Measurement) for m in results)
    assert {m.task_spec.label for m in results} == {'kl_loss fwd+bwd', 'var_voting'}
    assert all(m.task_spec.sub_label and m.task_spec.description for m in results)
    # the rows follow the (patched) size constants: the suite times what it says
    assert {(m.task_spec.sub_label, m.task_spec.description.split(' (')[0]) for m in results} \
        == {('n=64', 'KLLoss'), ('n=64', 'SmoothL1Loss'), ('N=200, kept=10', 'batched'),
            ('N=200, kept=10', 'loop per kept box')}
    benchmark.Compare(results).colorize()  # tabulates
    extras = suite.extras(args)
    assert list(extras) == ['var_voting max |batched - loop| px, N=200']
    assert extras['var_voting max |batched - loop| px, N=200'] == pytest.approx(0.0, abs=1e-3)
