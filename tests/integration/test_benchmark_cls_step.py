"""tools/benchmark.py (a dispatcher over tools/benchmarks/<suite>.py, on
torch.utils.benchmark) and its suites, on tiny inputs: the dispatcher finds any suite
module and writes its measurements and extras to JSON; in each suite every contender
runs (or is reported MISSING, never skipped silently), the contenders of a case compute
the same loss (so the benchmark compares like with like), host synchronisations and
peak memory are recorded, and the model-level benchmark reports s/iter, peak memory
and the loss's share."""
import argparse
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
_PATH = REPO / 'tools' / 'benchmark.py'


@pytest.fixture(scope='module')
def bench():
    spec = importlib.util.spec_from_file_location('detloss_benchmark_tool', _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _args(**kw):
    base = dict(device='cpu', threads=[1], quick=True, only=None, rest=[])
    base.update(kw)
    return argparse.Namespace(**base)


def _has(module):
    return importlib.util.find_spec(module) is not None


def test_dispatcher_runs_any_suite_module(bench, tmp_path, monkeypatch, capsys, one_thread):
    suites = tmp_path / 'benchmarks'
    suites.mkdir()
    (suites / '_helper.py').write_text('X = 1\n')     # helpers (_*.py) are not suites
    (suites / 'toy.py').write_text('''
import torch
from torch.utils.benchmark import Timer

def run(args):
    x = torch.ones(64)
    out = []
    for t in args.threads:
        for name, stmt in (('ref', 'x + 1'), ('peer', 'x * 2 + 1')):
            m = Timer(stmt, globals={'x': x}, label='toy', sub_label='n=64',
                      description=name, num_threads=t).blocked_autorange(min_run_time=0.01)
            m.metadata = {'ref': name == 'ref'}
            out.append(m)
    return out

def extras(args):
    return {'device': args.device, 'quick': args.quick, 'rest': args.rest}
''')
    monkeypatch.setattr(bench, 'SUITES_DIR', suites)
    assert bench.available_suites() == ['toy']
    out = tmp_path / 'r.json'
    assert bench.main(['--suite', 'toy', '--threads', '1', '2', '--quick', '--out', str(out),
                       '--', 'extra-arg']) == 0
    printed = capsys.readouterr().out
    assert 'toy' in printed and 'peer' in printed
    data = json.loads(out.read_text())
    ms = data['suites']['toy']['measurements']
    assert {(m['description'], m['num_threads']) for m in ms} == {
        ('ref', 1), ('peer', 1), ('ref', 2), ('peer', 2)}
    assert all(m['median_s'] > 0 and m['times_s'] for m in ms)
    assert data['suites']['toy']['extras'] == {'device': 'cpu', 'quick': True,
                                              'rest': ['extra-arg']}
    # the ratio table has one column per thread count, the peer as a ratio of the ref
    row = next(line for line in data['ratio_table'] if '| peer |' in line)
    assert row.count('x)') == 2
    with pytest.raises(SystemExit):
        bench.main(['--suite', 'nosuchsuite'])


def test_the_shipped_suites_are_found(bench):
    assert {'iou_family', 'classification', 'diou_nms', 'train_step', 'model'} <= set(
        bench.available_suites())
    for name in ('iou_family', 'classification', 'diou_nms', 'train_step', 'model'):
        assert callable(bench.load_suite(name).run)


def _calls(extras, case_part):
    return {k.split(' | ')[2]: v for k, v in extras['calls'].items() if case_part in k}


@pytest.fixture
def fast_compile(monkeypatch):
    """The suites' torch.compile contenders with the aot_eager backend (seconds)."""
    monkeypatch.setenv('DETLOSS_BENCH_COMPILE_BACKEND', 'aot_eager')


def test_classification_suite_same_losses_no_syncs(bench, one_thread, fast_compile):
    suite = bench.load_suite('classification')
    ms = suite.run(_args())
    extras = suite.extras(_args())
    descriptions = {m.description for m in ms}
    assert {'detloss', 'detloss compiled'} <= descriptions
    assert all(m.label == 'classification' and m.sub_label for m in ms)
    for case in suite.CASES:
        calls = _calls(extras, f'{case.name} | n=2^10')
        ours = calls['detloss']
        assert ours['host_syncs'] == 0 and ours['peak_bytes'] > 0
        for label, info in calls.items():
            if 'momentum=0.75' in case.name:
                continue   # the moving average depends on how many calls each made
            # every contender computes the same loss on the same inputs
            assert info['value'] == pytest.approx(ours['value'], rel=1e-5), label
        mmdet = [k for k in calls if k.startswith('mmdet')]
        if _has('mmdet'):
            assert mmdet and calls[mmdet[0]]['host_syncs'] >= 1   # F.one_hot / .item()
    missing = {m['description'] for m in extras.get('missing', [])}
    if not _has('torchvision'):
        assert 'torchvision' in missing        # reported, never skipped silently
    if not _has('mmdet'):
        assert any(d.startswith('mmdet') for d in missing)


def test_iou_family_suite_memory(bench, one_thread, fast_compile):
    suite = bench.load_suite('iou_family')
    ms = suite.run(_args(only=['giou']))
    extras = suite.extras(None)
    assert {m.sub_label for m in ms} == {'giou n=2^10', 'giou n=2^12'}
    assert {'detloss', 'detloss compiled'} <= {m.description for m in ms}
    calls = _calls(extras, 'giou | n=2^12')
    n = 2 ** 12
    # at least the gradient of pred (16 bytes a box) and the per-box temporaries of
    # the geometry (about twenty 4-byte numbers a box), nowhere near n^2
    for label in ('detloss', 'detloss compiled'):
        assert 16 * n < calls[label]['peak_bytes'] < 1000 * n, label


def test_diou_nms_suite_counts_and_syncs(bench, one_thread):
    suite = bench.load_suite('diou_nms')
    suite.run(_args())
    calls = _calls(suite.extras(None), 'n=1000')
    kept = calls['detloss diou_nms']['value']
    assert 0 < kept < 1000
    assert calls['detloss diou_nms (torch backend)']['value'] == kept
    assert calls['detloss cluster_diou_nms']['value'] == kept
    assert calls['detloss diou_nms']['host_syncs'] == 0          # the C kernel
    assert calls['detloss diou_nms (torch backend)']['host_syncs'] >= 2


@pytest.mark.skipif(not _has('mmdet'), reason='needs mmdet')
def test_train_step_suite_same_losses(bench, one_thread):
    suite = bench.load_suite('train_step')
    ms = suite.run(_args(only=['focal']))
    assert {m.sub_label for m in ms} == {'retinanet r50: focal (loss_cls) 64 px'}
    calls = _calls(suite.extras(None), 'focal')
    ours = calls['detloss']
    mmdet = next(v for k, v in calls.items() if k.startswith('mmdet'))
    # the same RetinaNet (learning rate 0), the same batch: the same losses
    for key in ('loss', 'loss_cls', 'loss_bbox'):
        assert math.isfinite(ours['value'][key])
        assert ours['value'][key] == pytest.approx(mmdet['value'][key], rel=1e-5)


@pytest.mark.skipif(not _has('mmdet'), reason='needs mmdet')
def test_model_suite_reports_s_per_iter_memory_and_loss_share(bench, tmp_path, one_thread):
    from _tools_helpers import make_tiny_setup
    config = make_tiny_setup(str(tmp_path), 'giou')
    suite = bench.load_suite('model')
    rest = [config, '--iters', '2', '--warmup', '1',
            '--vs-cfg-options', 'model.bbox_head.loss_bbox.type=GIoULoss']
    ms = suite.run(_args(rest=rest))
    variants = suite.extras(None)['variants']
    assert len(ms) == len(variants) == 2
    assert 'loss_bbox=detloss_plugin.GIoULoss' in ms[0].description and ms[0].metadata['ref']
    assert 'loss_bbox=mmdet.GIoULoss' in ms[1].description   # the --vs-cfg-options variant
    for v in variants:
        assert v['s_per_iter'] > 0 and v['iters'] == 2
        assert 0 < v['loss_share'] < 1 and v['loss_calls_per_iter'] >= 2
        assert v['peak_rss_bytes'] > 0
