"""Reading a run's logs and drawing it (detloss_plugin.engine.plots)."""
import json
import os
import os.path as osp

from detloss_plugin.datasets import PALETTE, generate_synthetic_coco
from detloss_plugin.engine.plots import plot_comparison, plot_training_report, read_scalars


def _write_scalars(work_dir, stamp, records):
    d = osp.join(work_dir, stamp, 'vis_data')
    os.makedirs(d, exist_ok=True)
    with open(osp.join(d, 'scalars.json'), 'w') as f:
        for r in records:
            f.write(json.dumps(r) + '\n')


def _train(step, loss):
    return dict(loss=loss, loss_cls=loss / 2, loss_bbox=loss / 2, lr=0.1, step=step)


def _val(step, m):
    return {'coco/bbox_mAP': m, 'coco/bbox_mAP_50': m + 0.2, 'coco/bbox_mAP_75': m,
            'step': step}


def test_read_scalars_merges_resumed_runs_and_places_validations(tmp_path):
    wd = str(tmp_path)
    # first run: validations logged by iteration
    _write_scalars(wd, '20250101_000000', [_train(25, 2.0), _train(50, 1.5), _val(50, 0.1)])
    # resumed run: mmengine's default LoggerHook logs them at "epoch" 0
    _write_scalars(wd, '20250101_010000', [_train(75, 1.2), _train(100, 1.0), _val(0, 0.2),
                                            _train(125, 0.9), _train(150, 0.8), _val(0, 0.3)])
    s = read_scalars(wd)
    assert [r['step'] for r in s['train']] == [25, 50, 75, 100, 125, 150]
    assert [(r['step'], r['coco/bbox_mAP']) for r in s['val']] == \
        [(50, 0.1), (100, 0.2), (150, 0.3)]


def test_report_and_comparison_pictures(tmp_path):
    data = str(tmp_path / 'data')
    generate_synthetic_coco(data, seed=0, num_train=1, num_val=3, image_size=(64, 64),
                            min_size=8, max_size=32)
    ann = osp.join(data, 'annotations', 'instances_val.json')
    coco = json.load(open(ann))
    # predictions: the ground truth itself, with a score
    preds = [dict(image_id=a['image_id'], category_id=a['category_id'], bbox=a['bbox'],
                  score=0.9) for a in coco['annotations']]
    pred_file = str(tmp_path / 'p.bbox.json')
    json.dump(preds, open(pred_file, 'w'))
    wd = str(tmp_path / 'run')
    _write_scalars(wd, '20250101_000000', [_train(10, 2.0), _train(20, 1.0), _val(20, 0.4)])
    out = plot_training_report(wd, str(tmp_path / 'r.png'), pred_json=pred_file,
                               ann_file=ann, img_dir=osp.join(data, 'val'), num_images=3,
                               palette=PALETTE, title='t')
    assert osp.getsize(out) > 20000
    out = plot_training_report(wd, str(tmp_path / 'curves_only.png'))
    assert osp.getsize(out) > 10000
    wd2 = str(tmp_path / 'run2')
    _write_scalars(wd2, '20250101_000000', [_train(10, 2.0), _val(10, 0.2), _val(20, 0.3)])
    out = plot_comparison({'a': wd, 'b': wd2}, str(tmp_path / 'cmp.png'))
    assert osp.getsize(out) > 10000


def test_validation_losses_read_and_drawn(tmp_path):
    """ValLossLoop's val/... records are validation records (also without COCO metrics)
    and the curves draw each val term beside its training term, in its colour."""
    from detloss_plugin.engine.plots import _draw_curves, _figure
    wd = str(tmp_path)
    _write_scalars(wd, '20250101_000000', [
        _train(10, 2.0), dict(_val(10, 0.1), **{'val/loss': 2.5, 'val/loss_cls': 1.5,
                                                'val/loss_bbox': 1.0}),
        _train(20, 1.0), {'val/loss': 1.5, 'val/loss_cls': 1.0, 'val/loss_bbox': 0.5,
                          'step': 20}])
    s = read_scalars(wd)
    assert [(r['step'], r['val/loss']) for r in s['val']] == [(10, 2.5), (20, 1.5)]
    assert [r['step'] for r in s['train']] == [10, 20]
    ax_loss, ax_map = _figure((8, 4)).subplots(1, 2)
    _draw_curves(ax_loss, ax_map, s)
    lines = {line.get_label(): line for line in ax_loss.lines}
    assert set(lines) == {'loss', 'loss_cls', 'loss_bbox', 'val/loss', 'val/loss_cls',
                          'val/loss_bbox'}
    assert list(lines['val/loss_bbox'].get_ydata()) == [1.0, 0.5]
    assert lines['val/loss_cls'].get_color() == lines['loss_cls'].get_color()
    assert lines['val/loss'].get_marker() == 'o'
