"""tools/compare_losses.py: statistics over seeds and the resume logic on fake finished
runs (no training), checked against hand-computed values; and one real comparison of
two losses on the tiny dataset."""
import importlib.util
import json
import math
import os
import os.path as osp

import pytest

from _tools_helpers import TOOLS, make_tiny_setup, run_tool


def _tool():
    spec = importlib.util.spec_from_file_location('compare_losses',
                                                  osp.join(TOOLS, 'compare_losses.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------- fake finished runs
MAP = {'a': [0.50, 0.48, 0.52], 'b': [0.53, 0.50, 0.56], 'c': [0.49, 0.51, 0.47]}
VAL_LOSS = {'a': [1.0, 1.2, 1.1], 'b': [0.9, 1.0, 1.0], 'c': [1.1, 1.1, 1.3]}


def _finish(wd: str, mAP: float, val_loss: float, seconds: float = 61.0) -> None:
    """Write what a finished run leaves: test metrics, training time, the validation
    log (two validations; the last holds the final values)."""
    os.makedirs(osp.join(wd, 'test'), exist_ok=True)
    with open(osp.join(wd, 'test', 'test_metrics.json'), 'w') as f:
        json.dump({'coco/bbox_mAP': mAP, 'coco/bbox_mAP_50': mAP + 0.3,
                   'coco/bbox_mAP_75': mAP - 0.1}, f)
    with open(osp.join(wd, 'train_time.json'), 'w') as f:
        json.dump(dict(train_seconds=seconds), f)
    vis = osp.join(wd, '20260101_000000', 'vis_data')
    os.makedirs(vis, exist_ok=True)
    records = [dict(loss=2.0, loss_cls=1.5, loss_bbox=0.5, step=50),
               {'coco/bbox_mAP': mAP / 2, 'val/loss': val_loss + 1, 'step': 50},
               dict(loss=1.5, loss_cls=1.0, loss_bbox=0.5, step=100),
               {'coco/bbox_mAP': mAP, 'val/loss': val_loss, 'val/loss_bbox': val_loss / 4,
                'step': 100}]
    with open(osp.join(vis, 'scalars.json'), 'w') as f:
        f.write('\n'.join(json.dumps(r) for r in records) + '\n')


def _fake_setup(root: str, losses=('a', 'b', 'c'), seeds=(0, 1, 2)):
    configs = osp.join(root, 'configs')
    os.makedirs(configs, exist_ok=True)
    for name in losses:
        open(osp.join(configs, f'fake_{name}.py'), 'w').close()
    work = osp.join(root, 'work')
    for name in losses:
        for seed in seeds:
            _finish(osp.join(work, f'seed{seed}', name), MAP[name][seed], VAL_LOSS[name][seed])
    return configs, work


def _args(configs, work, *extra):
    return ['--config-dir', configs, '--pattern', 'fake_{}.py', '--losses', 'a', 'b', 'c',
            '--seeds', '0', '1', '2', '--work-dir', work, '--skip-existing'] + list(extra)


def _no_commands(monkeypatch, tool):
    def fail(cmd, log_path):
        raise AssertionError(f'nothing should run, got {cmd}')
    monkeypatch.setattr(tool, 'run', fail)


def test_seeds_statistics_against_hand_values(tmp_path, monkeypatch):
    tool = _tool()
    _no_commands(monkeypatch, tool)
    configs, work = _fake_setup(str(tmp_path))
    tool.main(_args(configs, work))
    res = json.load(open(osp.join(work, 'results.json')))
    assert res['baseline'] == 'a' and res['metric'] == 'mAP' and res['seeds'] == [0, 1, 2]
    assert [(r['loss'], r['seed']) for r in res['runs']] == [
        (n, s) for s in (0, 1, 2) for n in 'abc']
    summary = {s['loss']: s for s in res['summary']}
    # a: 0.50, 0.48, 0.52 -> mean 0.50, sd sqrt((0 + 0.02^2 + 0.02^2) / 2) = 0.02
    assert summary['a']['mAP']['mean'] == pytest.approx(0.50)
    assert summary['a']['mAP']['std'] == pytest.approx(0.02)
    assert summary['a']['mAP']['n'] == 3
    assert summary['a']['AP50']['mean'] == pytest.approx(0.80)
    # the last validation's loss: a: 1.0, 1.2, 1.1 -> 1.1 +- 0.1
    assert summary['a']['val/loss']['mean'] == pytest.approx(1.1)
    assert summary['a']['val/loss']['std'] == pytest.approx(0.1)
    paired = {c['loss']: c for c in res['paired']}
    # b - a: 0.03, 0.02, 0.04 -> mean 0.03, sd 0.01, half-width t(0.975, 2) 0.01 / sqrt(3)
    half = 4.302653 * 0.01 / math.sqrt(3)
    b = paired['b']
    assert b['diffs'] == pytest.approx([0.03, 0.02, 0.04])
    assert (b['mean'], b['std']) == pytest.approx((0.03, 0.01))
    assert (b['low'], b['high']) == pytest.approx((0.03 - half, 0.03 + half), abs=1e-5)
    assert (b['better'], b['worse'], b['outside_noise']) == (3, 0, True)
    # c - a: -0.01, 0.03, -0.05 -> mean -0.01, sd 0.04: the interval holds 0
    c = paired['c']
    assert (c['mean'], c['std']) == pytest.approx((-0.01, 0.04))
    half = 4.302653 * 0.04 / math.sqrt(3)
    assert (c['low'], c['high']) == pytest.approx((-0.01 - half, -0.01 + half), abs=1e-5)
    assert (c['better'], c['worse'], c['outside_noise']) == (1, 2, False)
    md = open(osp.join(work, 'results.md')).read()
    assert ('| a | 0, 1, 2 | 0.500 +- 0.020 | 0.800 +- 0.020 | 0.400 +- 0.020 '
            '| 1.1000 +- 0.1000 |') in md
    assert f'| b | 0, 1, 2 | +0.030 | [{0.03 - 4.302653 * 0.01 / math.sqrt(3):+.3f}, ' in md
    assert '| 3 of 3 | yes |' in md and '| 1 of 3 | no |' in md
    # pooled seed noise: deviations a 0, -.02, .02; b 0, -.03, .03; c 0, .02, -.02 ->
    # sum of squares 0.0034 over 6 degrees of freedom
    sd = math.sqrt(0.0034 / 6)
    assert res['seed_noise']['df'] == 6
    assert res['seed_noise']['std'] == pytest.approx(sd)
    lsd3 = 2.4469 * sd * math.sqrt(2 / 3)  # t(0.975, 6) = 2.4469
    assert f'standard deviation {sd:.3f} (6 degrees of freedom)' in md
    assert f'{lsd3:.3f} (3 seeds)' in md
    assert osp.getsize(osp.join(work, 'comparison.png')) > 10000


def test_val_loss_metric_lower_is_better(tmp_path, monkeypatch):
    tool = _tool()
    _no_commands(monkeypatch, tool)
    configs, work = _fake_setup(str(tmp_path))
    tool.main(_args(configs, work, '--metric', 'val/loss', '--baseline', 'b'))
    res = json.load(open(osp.join(work, 'results.json')))
    paired = {c['loss']: c for c in res['paired']}
    assert set(paired) == {'a', 'c'}
    # a - b: 0.1, 0.2, 0.1 -> mean 0.1333, sd 0.05774, half-width 4.3027 * sd / sqrt(3)
    a = paired['a']
    assert a['mean'] == pytest.approx(0.4 / 3)
    assert a['std'] == pytest.approx(math.sqrt(0.02 / 3 / 2))
    half = 4.302653 * math.sqrt(0.02 / 3 / 2) / math.sqrt(3)
    assert (a['low'], a['high']) == pytest.approx((0.4 / 3 - half, 0.4 / 3 + half), abs=1e-5)
    # higher loss is worse: a is worse than b in every seed
    assert (a['better'], a['worse'], a['outside_noise']) == (0, 3, False)
    # c - b: 0.2, 0.1, 0.3 -> mean 0.2, sd 0.1: [0.2 - 0.2484, 0.2 + 0.2484]
    c = paired['c']
    assert (c['mean'], c['std']) == pytest.approx((0.2, 0.1))
    assert (c['better'], c['worse']) == (0, 3)
    md = open(osp.join(work, 'results.md')).read()
    assert 'Paired with b (val/loss, difference = loss - b, lower is better' in md


def test_paired_uses_common_seeds_and_single_seed():
    tool = _tool()
    res = tool.paired({0: 0.5, 1: 0.6, 5: 0.9}, {0: 0.4, 1: 0.4, 2: 0.1}, False)
    assert res['seeds'] == [0, 1] and res['diffs'] == pytest.approx([0.1, 0.2])
    assert tool.pooled_std([[1.0], [2.0]]) == dict(std=None, df=0)
    # (0.5^2 + 0.5^2) + (1^2 + 0 + 1^2) = 2.5 over 1 + 2 degrees of freedom
    assert tool.pooled_std([[1.0, 2.0], [3.0, 4.0, 5.0], [9.0]]) == dict(
        std=pytest.approx(math.sqrt(2.5 / 3)), df=3)
    one = tool.paired({0: 0.5}, {0: 0.4}, False)
    assert one['low'] is None and one['std'] is None and not one['outside_noise']
    assert tool.mean_std([]) == dict(n=0, mean=None, std=None)
    assert tool.t_quantile_975(1) == pytest.approx(12.7062)
    assert tool.t_quantile_975(31) == pytest.approx(2.0395, abs=1e-4)
    assert tool.t_quantile_975(120) == pytest.approx(1.9799, abs=1e-4)
    with pytest.raises(ValueError):
        tool.t_quantile_975(0)


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip('scipy.stats')
    tool = _tool()
    for df in list(range(1, 41)) + [60, 100, 1000]:
        assert tool.t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-4)


def test_resume_logic(tmp_path, monkeypatch):
    """Finished runs are read; a run killed during testing is only tested; a run killed
    during training is resumed from its checkpoint; a missing run is trained; without
    --skip-existing everything is trained again."""
    tool = _tool()
    root = str(tmp_path)
    configs, work = _fake_setup(root, seeds=(0,))
    calls = []

    def fake_run(cmd, log_path):
        calls.append(cmd)
        wd = cmd[cmd.index('--work-dir') + 1]
        if 'train.py' in cmd[1]:
            ckpt = osp.join(wd, 'iter_100.pth')
            open(ckpt, 'w').close()
            with open(osp.join(wd, 'last_checkpoint'), 'w') as f:
                f.write(ckpt)
        else:  # test.py writes the metrics
            os.makedirs(wd, exist_ok=True)
            with open(osp.join(wd, 'test_metrics.json'), 'w') as f:
                json.dump({'coco/bbox_mAP': 0.5, 'coco/bbox_mAP_50': 0.8,
                           'coco/bbox_mAP_75': 0.4}, f)
        return 10.0

    monkeypatch.setattr(tool, 'run', fake_run)
    seed1 = osp.join(work, 'seed1')
    # b, seed 1: trained, killed during the test
    _finish(osp.join(seed1, 'b'), 0.4, 1.0)
    os.remove(osp.join(seed1, 'b', 'test', 'test_metrics.json'))
    open(osp.join(seed1, 'b', 'iter_100.pth'), 'w').close()
    with open(osp.join(seed1, 'b', 'last_checkpoint'), 'w') as f:
        f.write(osp.join(seed1, 'b', 'iter_100.pth'))
    # c, seed 1: killed during training, after a checkpoint
    os.makedirs(osp.join(seed1, 'c'))
    open(osp.join(seed1, 'c', 'iter_50.pth'), 'w').close()
    with open(osp.join(seed1, 'c', 'last_checkpoint'), 'w') as f:
        f.write(osp.join(seed1, 'c', 'iter_50.pth'))
    # a, seed 1: never started
    tool.main(['--config-dir', configs, '--pattern', 'fake_{}.py', '--losses', 'a', 'b', 'c',
               '--seeds', '0', '1', '--work-dir', work, '--skip-existing'])
    done = [(osp.basename(c[1]), osp.relpath(c[c.index('--work-dir') + 1], work),
             '--resume' in c) for c in calls]
    assert done == [('train.py', 'seed1/a', False), ('test.py', 'seed1/a/test', False),
                    ('test.py', 'seed1/b/test', False),
                    ('train.py', 'seed1/c', True), ('test.py', 'seed1/c/test', False)]
    runs = json.load(open(osp.join(work, 'results.json')))['runs']
    runs = {(r['loss'], r['seed']): r for r in runs}
    assert runs[('c', 1)]['resumed'] is True and runs[('a', 1)]['resumed'] is False
    assert runs[('a', 0)]['mAP'] == MAP['a'][0]  # reused, not retrained
    assert '(resumed)' in open(osp.join(work, 'results.md')).read()
    # the seed in every command
    assert all(c[c.index('--cfg-options') + 1] == 'randomness.seed=1' for c in calls)
    # a second call has nothing to do
    calls.clear()
    tool.main(['--config-dir', configs, '--pattern', 'fake_{}.py', '--losses', 'a', 'b', 'c',
               '--seeds', '0', '1', '--work-dir', work, '--skip-existing'])
    assert calls == []
    # without --skip-existing: every run trained from scratch
    tool.main(['--config-dir', configs, '--pattern', 'fake_{}.py', '--losses', 'a',
               '--seeds', '0', '--work-dir', work])
    assert [(osp.basename(c[1]), '--resume' in c) for c in calls] == [
        ('train.py', False), ('test.py', False)]


def test_report_only_trains_nothing(tmp_path, monkeypatch, capsys):
    tool = _tool()
    _no_commands(monkeypatch, tool)
    configs, work = _fake_setup(str(tmp_path), seeds=(0, 1))
    tool.main(_args(configs, work, '--report-only'))  # seed 2 is missing
    assert capsys.readouterr().out.count('not finished') == 3
    res = json.load(open(osp.join(work, 'results.json')))
    assert len(res['runs']) == 6
    assert {s['loss']: s['seeds'] for s in res['summary']} == {n: [0, 1] for n in 'abc'}
    assert {c['loss']: c['seeds'] for c in res['paired']} == {'b': [0, 1], 'c': [0, 1]}


def test_bad_arguments(tmp_path):
    tool = _tool()
    configs, work = _fake_setup(str(tmp_path), seeds=(0,))
    with pytest.raises(SystemExit):
        tool.parse_args(['--losses', 'a', '--seeds', '0', '0'])
    with pytest.raises(SystemExit):
        tool.parse_args(['--losses', 'a', '--metric', 'loss'])
    with pytest.raises(SystemExit, match='baseline'):
        tool.main(['--config-dir', configs, '--pattern', 'fake_{}.py', '--losses', 'a', 'b',
                   '--seeds', '0', '--work-dir', work, '--baseline', 'z'])


# ------------------------------------------------------------------ a real comparison
def test_compare_two_losses(tmp_path):
    root = str(tmp_path)
    for loss in ('giou', 'l1'):
        make_tiny_setup(root, loss)
    work = osp.join(root, 'cmp')
    proc = run_tool(['compare_losses.py', '--config-dir', root, '--pattern', 'tiny_{}.py',
                     '--losses', 'giou', 'l1', '--work-dir', work, '--cfg-options',
                     'train_cfg.max_iters=2'], cwd=root)
    results = json.load(open(osp.join(work, 'results.json')))['runs']
    assert [r['loss'] for r in results] == ['giou', 'l1']
    rows = [line for line in open(osp.join(work, 'results.md')) if line.startswith('| ')]
    assert rows[0].startswith('| loss | seed | mAP | AP50 | AP75 | val/loss |')
    for r, row in zip(results, rows[1:3]):
        metrics = json.load(open(osp.join(work, r['loss'], 'test', 'test_metrics.json')))
        assert r['mAP'] == metrics['coco/bbox_mAP']
        assert r['AP50'] == metrics['coco/bbox_mAP_50']
        # the quick-start configs log the validation loss (ValLossLoop), here at the
        # end of training (iteration 2)
        assert r['val']['val_step'] == 2 and r['val']['val/loss'] > 0
        assert row.startswith(f"| {r['loss']} | 0 | {r['mAP']:.3f} | {r['AP50']:.3f} | "
                              f"{r['AP75']:.3f} | {r['val']['val/loss']:.4f} |")
        assert r['train_seconds'] > 0
        # both runs trained exactly 2 iterations with the same seed
        with open(osp.join(work, r['loss'], 'last_checkpoint')) as f:
            assert f.read().strip().endswith('iter_2.pth')
    assert osp.getsize(osp.join(work, 'comparison.png')) > 10000
    assert 'comparison.png' in proc.stdout
    # a second call with --skip-existing reuses both runs and trains nothing
    proc = run_tool(['compare_losses.py', '--config-dir', root, '--pattern', 'tiny_{}.py',
                     '--losses', 'giou', 'l1', '--work-dir', work, '--skip-existing'],
                    cwd=root)
    assert proc.stdout.count('reusing') == 2
    assert 'tools/train.py' not in proc.stdout.replace(osp.sep, '/')
