"""Smoke tests of tools/benchmark.py's classification and train-step sections, on tiny
inputs: every contender runs, the contenders of a case compute the same loss (so the
benchmark compares like with like), host synchronisations are counted, a missing
torchvision is reported and never passes, and the target checks read the ratios."""
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

_PATH = Path(__file__).resolve().parent.parent / 'tools' / 'benchmark.py'


@pytest.fixture(scope='module')
def bench():
    spec = importlib.util.spec_from_file_location('detloss_benchmark_cls', _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run(bench, case, n):
    rows = bench.run_case(case, n, torch.device('cpu'), bench.MAIN, 0.0, 2, 2,
                          case_reps=False)
    bench.ratios(rows)
    return {r['contender']: r for r in rows}


def test_classification_cases(bench, one_thread):
    n = 2 ** 9
    for case in bench.CLASSIFICATION:
        rows = _run(bench, case, n)
        assert set(rows) >= {'detloss', 'detloss plain', 'mmdet 3.3.0'}
        ours = rows['detloss']
        assert ours['ref'] and ours['reps'] == 2
        for label, r in rows.items():
            assert r['status'] == 'ok', (label, r['status'])
            assert r['median_ms'] > 0 and r['peak_bytes'] > 0
            # every contender computes the same loss on the same inputs
            assert r['extra']['loss'] == pytest.approx(ours['extra']['loss'], rel=1e-5)
            if label != 'detloss':
                assert r['speed_ratio'] > 0 and r['memory_ratio'] > 0
        # no host synchronisation in detloss's losses; mmdet's CPU focal path syncs in
        # F.one_hot, its GHMC once for N and once per region (with nonzero on top)
        assert ours['host_syncs'] == 0 and rows['detloss plain']['host_syncs'] == 0
        if case.name.startswith('ghm-c'):
            bins = int(case.name.split('bins=')[1].split(',')[0])
            assert rows['mmdet 3.3.0']['host_syncs'] >= bins + 1
        else:
            assert rows['mmdet 3.3.0']['host_syncs'] >= 1


def test_train_step_case_same_losses(bench, one_thread):
    case = next(c for c in bench.TRAIN_STEP if 'focal' in c.name)
    rows = _run(bench, case, 64)
    ours, mmdet = rows['detloss'], rows['mmdet 3.3.0']
    assert ours['status'] == mmdet['status'] == 'ok'
    assert ours['median_ms'] > 0 and mmdet['speed_ratio'] > 0
    # the same RetinaNet (learning rate 0: the weights stay put), the same batch, so
    # the same losses from detloss's and mmdet's FocalLoss
    for key in ('loss', 'loss_cls', 'loss_bbox'):
        assert math.isfinite(ours['extra'][key])
        assert ours['extra'][key] == pytest.approx(mmdet['extra'][key], rel=1e-5)
    table = bench.markdown(list(rows.values()), [case])
    assert '| 64 px | cpu |' in table


def test_missing_torchvision_is_reported(bench, one_thread, tmp_path, capsys):
    out = tmp_path / 'bench.json'
    assert bench.main(['--quick', '--suite', 'classification', '--only', 'focal',
                       '--threads', '1', '--tv-python', 'none', '--out', str(out)]) == 0
    assert 'torchvision peer MISSING' in capsys.readouterr().out
    data = json.loads(out.read_text())
    tv = [r for r in data['rows'] if r['contender'] == 'torchvision']
    assert tv and all(r['status'].startswith('MISSING') for r in tv)
    ok = [r for r in data['rows'] if r['env'] == 'main']
    assert ok and all(r['status'] == 'ok' for r in ok)


def test_target_checks(bench):
    def row(case, contender, n, group, ratio=None, ref=False, syncs=None):
        r = dict(group=group, case=case, n=n, device='cpu', env='main', contender=contender,
                 ref=ref, status='ok')
        if ratio is not None:
            r['speed_ratio'] = ratio
        if syncs is not None:
            r['host_syncs'] = syncs
        return r
    ghm = 'ghm-c (bins=10, momentum=0.0)'
    rows = [row(ghm, 'detloss', 2 ** 16, 'classification', ref=True, syncs=0),
            row(ghm, 'mmdet 3.3.0', 2 ** 16, 'classification', 3.5, syncs=11),
            row(ghm, 'detloss', 2 ** 17, 'classification', ref=True, syncs=0),
            row(ghm, 'mmdet 3.3.0', 2 ** 17, 'classification', 2.5, syncs=11),
            row('step', 'detloss', 320, 'train-step', ref=True),
            row('step', 'mmdet 3.3.0', 320, 'train-step', 1 / 1.02),
            row('step2', 'detloss', 320, 'train-step', ref=True),
            row('step2', 'mmdet 3.3.0', 320, 'train-step', 1 / 1.05)]
    lines = bench.targets(rows)
    assert any(x.startswith('met     GHM-C') and 'n=2^16' in x and '3.50x' in x for x in lines)
    assert any(x.startswith('NOT MET GHM-C') and 'n=2^17' in x for x in lines)
    assert any(x.startswith('met     train step step ') and '+2.0%' in x for x in lines)
    assert any(x.startswith('NOT MET train step step2') and '+5.0%' in x for x in lines)
    rows[0]['host_syncs'] = 1   # a sync in detloss fails the GHM-C target
    assert any(x.startswith('NOT MET GHM-C') and 'n=2^16' in x for x in bench.targets(rows))
