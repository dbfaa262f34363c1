"""tools/compare_losses.py: two losses on the tiny dataset, table and plot."""
import json
import os.path as osp

from _tools_helpers import make_tiny_setup, run_tool


def test_compare_two_losses(tmp_path):
    root = str(tmp_path)
    for loss in ('giou', 'l1'):
        make_tiny_setup(root, loss)
    work = osp.join(root, 'cmp')
    proc = run_tool(['compare_losses.py', '--config-dir', root, '--pattern', 'tiny_{}.py',
                     '--losses', 'giou', 'l1', '--work-dir', work, '--cfg-options',
                     'train_cfg.max_iters=2'], cwd=root)
    results = json.load(open(osp.join(work, 'results.json')))
    assert [r['loss'] for r in results] == ['giou', 'l1']
    rows = [line for line in open(osp.join(work, 'results.md')) if line.startswith('| ')]
    assert len(rows) == 3  # header + 2 losses
    for r, row in zip(results, rows[1:]):
        metrics = json.load(open(osp.join(work, r['loss'], 'test', 'test_metrics.json')))
        assert r['mAP'] == metrics['coco/bbox_mAP']
        assert r['AP50'] == metrics['coco/bbox_mAP_50']
        assert row.startswith(f"| {r['loss']} | {r['mAP']:.3f} | {r['AP50']:.3f} | "
                              f"{r['AP75']:.3f} |")
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
