"""Pictures of a training run: loss and mAP curves, predictions on images, comparisons.

Everything is read from files a run leaves behind, so the functions work on any work
dir (CPU quick start or GPU COCO run):

- the curves from mmengine's ``LocalVisBackend`` logs
  (``<work_dir>/<timestamp>/vis_data/scalars.json``, one JSON record per line; a resumed
  run has several timestamps, which are merged), the validation losses
  (``val/loss``, ``val/loss_cls``, ... of :class:`detloss_plugin.ValLossLoop`) among them;
- the predictions from a COCO results file (``tools/test.py --json-prefix P`` writes
  ``P.bbox.json``) and the ground truth from the COCO annotation file.

matplotlib is imported lazily and only through ``matplotlib.figure.Figure`` with an Agg
canvas: no pyplot state and no global backend change.
"""
import glob
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

__all__ = ['read_scalars', 'plot_curves', 'plot_training_report', 'plot_comparison',
           'plot_seed_comparison']

_TRAIN_KEYS = ('loss', 'loss_cls', 'loss_bbox')
_VAL_KEYS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75')
_VAL_LOSS_PREFIX = 'val/'  # ValLossLoop's names: val/loss, val/loss_cls, ...


def _is_val_record(rec: Dict) -> bool:
    return any(k in rec for k in _VAL_KEYS) or any(k.startswith(_VAL_LOSS_PREFIX) for k in rec)


def read_scalars(work_dir: str) -> Dict[str, List[Dict]]:
    """``{'train': [records], 'val': [records]}`` from every ``scalars.json`` under
    ``work_dir`` (sorted by timestamp folder, later records win for a repeated step;
    each record's ``'step'`` is its training iteration)."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    train: Dict[int, Dict] = {}
    val_records: List[tuple] = []  # (logged step, last training step before it, record)
    for path in files:
        last_train = 0
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                rec = json.loads(line)
                step = int(rec.get('step', rec.get('iter', 0)))
                if 'loss' in rec:
                    train[step] = rec
                    last_train = step
                elif _is_val_record(rec):
                    val_records.append((step, last_train, rec))
    # With LoggerHook(log_metric_by_epoch=True), mmengine's default, an iteration-based
    # run logs every validation at step 0 (the epoch): place those at the training
    # iteration logged just before them instead.
    logged = [s for s, _, _ in val_records]
    by_epoch = len(set(logged)) < len(logged) or logged != sorted(logged)
    val: Dict[int, Dict] = {}
    for step, last_train, rec in val_records:
        rec = dict(rec, step=last_train if by_epoch else step)
        val[rec['step']] = rec
    return dict(train=[train[k] for k in sorted(train)], val=[val[k] for k in sorted(val)])


def _figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _draw_curves(ax_loss, ax_map, scalars: Dict[str, List[Dict]], label: str = '') -> None:
    train, val = scalars['train'], scalars['val']
    steps = [r['step'] for r in train]
    for key, style in zip(_TRAIN_KEYS, ('-', '--', ':')):
        ys = [r.get(key) for r in train]
        if steps and all(y is not None for y in ys):
            line, = ax_loss.plot(steps, ys, style, label=f'{label}{key}')
            # the same term on the validation set, same colour, dots
            vsteps = [r['step'] for r in val if _VAL_LOSS_PREFIX + key in r]
            if vsteps:
                ax_loss.plot(vsteps, [r[_VAL_LOSS_PREFIX + key] for r in val
                                      if _VAL_LOSS_PREFIX + key in r],
                             style, marker='o', color=line.get_color(),
                             label=f'{label}{_VAL_LOSS_PREFIX}{key}')
    ax_loss.set_xlabel('iteration')
    ax_loss.set_ylabel('loss (train; val: dots)')
    ax_loss.grid(alpha=0.3)
    vsteps = [r['step'] for r in val]
    for key, marker in zip(_VAL_KEYS, ('o', 's', '^')):
        ys = [r.get(key) for r in val]
        if vsteps and all(y is not None for y in ys):
            name = key.split('/')[-1].replace('bbox_', '')
            ax_map.plot(vsteps, ys, marker=marker, label=f'{label}{name}')
    ax_map.set_xlabel('iteration')
    ax_map.set_ylabel('COCO AP (val)')
    ax_map.set_ylim(bottom=0)
    ax_map.grid(alpha=0.3)


def _save(fig, out_file: str, title: Optional[str]) -> str:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
    fig.savefig(out_file)
    return out_file


def plot_curves(work_dir: str, out_file: str, title: Optional[str] = None) -> str:
    """Loss and mAP curves of the run in ``work_dir``, written to ``out_file``."""
    return plot_training_report(work_dir, out_file, title=title)


def _draw_predictions(ax, img_path: str, gts: Sequence[Dict], dets: Sequence[Dict],
                      cat_names: Dict[int, str], palette: Dict[int, tuple],
                      score_thr: float) -> None:
    from matplotlib.patches import Rectangle
    from PIL import Image
    img = Image.open(img_path).convert('RGB')
    ax.imshow(img)
    for g in gts:
        x, y, w, h = g['bbox']
        ax.add_patch(Rectangle((x, y), w, h, fill=False, ec='white', lw=1.0, ls='--'))
    for d in dets:
        if d['score'] < score_thr:
            continue
        x, y, w, h = d['bbox']
        colour = tuple(c / 255 for c in palette.get(d['category_id'], (255, 255, 0)))
        ax.add_patch(Rectangle((x, y), w, h, fill=False, ec=colour, lw=1.6))
        ax.text(x, y - 1, f"{cat_names.get(d['category_id'], '?')} {d['score']:.2f}",
                fontsize=6, color='black', va='bottom',
                bbox=dict(fc=colour, ec='none', pad=0.5, alpha=0.85))
    ax.set_axis_off()


def plot_training_report(work_dir: str, out_file: str, pred_json: Optional[str] = None,
                         ann_file: Optional[str] = None, img_dir: Optional[str] = None,
                         num_images: int = 4, score_thr: float = 0.3,
                         palette: Optional[Sequence[tuple]] = None,
                         title: Optional[str] = None) -> str:
    """One picture: loss and mAP curves on top, predictions (solid, coloured by class,
    with scores >= ``score_thr``) and ground truth (white dashed) on the first
    ``num_images`` images of ``ann_file`` below (when ``pred_json`` is given)."""
    scalars = read_scalars(work_dir)
    with_preds = pred_json is not None and ann_file is not None and img_dir is not None
    n = max(1, num_images) if with_preds else 0
    fig = _figure((max(11, 2.8 * n), 4 + (3.0 if n else 0)))
    if n:
        grid = fig.add_gridspec(2, n, height_ratios=[4, 3])
        ax_loss = fig.add_subplot(grid[0, :n // 2 or 1])
        ax_map = fig.add_subplot(grid[0, (n // 2 or 1):] if n > 1 else grid[0, 0])
    else:
        ax_loss, ax_map = fig.subplots(1, 2)
    _draw_curves(ax_loss, ax_map, scalars)
    for ax in (ax_loss, ax_map):
        if ax.lines:
            ax.legend(fontsize=8)
    if n:
        with open(ann_file) as f:
            coco = json.load(f)
        with open(pred_json) as f:
            preds = json.load(f)
        cat_names = {c['id']: c['name'] for c in coco['categories']}
        cat_ids = [c['id'] for c in coco['categories']]
        colours = {cid: tuple(palette[i % len(palette)]) if palette else
                   (230, 25, 75) for i, cid in enumerate(cat_ids)}
        images = sorted(coco['images'], key=lambda im: im['id'])[:n]
        for i, im in enumerate(images):
            ax = fig.add_subplot(grid[1, i])
            gts = [a for a in coco['annotations'] if a['image_id'] == im['id']]
            dets = sorted((p for p in preds if p['image_id'] == im['id']),
                          key=lambda p: p['score'])
            _draw_predictions(ax, osp.join(img_dir, im['file_name']), gts, dets,
                              cat_names, colours, score_thr)
            shown = sum(d['score'] >= score_thr for d in dets)
            ax.set_title(f"val image {im['id']}: {shown} predicted, {len(gts)} annotated",
                         fontsize=8)
    return _save(fig, out_file, title)


def plot_comparison(runs: Dict[str, str], out_file: str, final: Optional[Dict[str, Dict]] = None,
                    title: Optional[str] = None) -> str:
    """Compare runs: ``runs`` maps a label to its work dir. Left: val mAP curves; right:
    final mAP / AP50 / AP75 bars (from ``final[label]`` = ``{'mAP':, 'AP50':, 'AP75':}``
    when given, else the last validation)."""
    fig = _figure((12, 4.5))
    ax_curve, ax_bar = fig.subplots(1, 2)
    finals = {}
    for label, wd in runs.items():
        val = read_scalars(wd)['val']
        if val:
            ax_curve.plot([r['step'] for r in val], [r.get('coco/bbox_mAP', 0) for r in val],
                          marker='o', label=label)
            last = val[-1]
            finals[label] = dict(mAP=last.get('coco/bbox_mAP', 0),
                                 AP50=last.get('coco/bbox_mAP_50', 0),
                                 AP75=last.get('coco/bbox_mAP_75', 0))
    if final:
        finals.update(final)
    ax_curve.set_xlabel('iteration')
    ax_curve.set_ylabel('val mAP')
    ax_curve.grid(alpha=0.3)
    if ax_curve.lines:
        ax_curve.legend(fontsize=8)
    labels = list(finals)
    width = 0.27
    for j, key in enumerate(('mAP', 'AP50', 'AP75')):
        xs = [i + (j - 1) * width for i in range(len(labels))]
        ax_bar.bar(xs, [finals[k][key] for k in labels], width, label=key)
    ax_bar.set_xticks(range(len(labels)))
    ax_bar.set_xticklabels(labels, rotation=30, ha='right', fontsize=8)
    ax_bar.set_ylabel('COCO AP (val)')
    ax_bar.legend(fontsize=8)
    ax_bar.grid(axis='y', alpha=0.3)
    return _save(fig, out_file, title)


def plot_seed_comparison(runs: Dict[str, Dict[int, str]], values: Dict[str, Dict[int, float]],
                         paired: Sequence[Dict], out_file: str, metric: str = 'mAP',
                         curve_key: str = 'coco/bbox_mAP', title: Optional[str] = None) -> str:
    """Compare losses over seeds, three panels:

    - ``curve_key`` (a logged validation scalar) against iteration, the mean over the
      seeds of each loss whose run logged it (``runs[loss][seed]`` is a work dir), at
      the iterations that all of them logged;
    - the final ``metric`` (``values[loss][seed]``): the mean with an error bar of one
      sample standard deviation, and one dot per seed beside it;
    - the paired differences with the baseline (``paired``: rows of
      ``tools/compare_losses.py``'s ``paired``, with ``mean``, ``low``, ``high``,
      ``diffs``): the mean, its 95% interval, and one dot per seed.
    """
    import math
    fig = _figure((16, 4.8))
    ax_curve, ax_final, ax_diff = fig.subplots(1, 3)
    for label, seeds in runs.items():
        curves = []
        for wd in seeds.values():
            val = read_scalars(wd)['val']
            curve = {r['step']: r[curve_key] for r in val if curve_key in r}
            if curve:  # a run without logs (results imported from elsewhere) adds none
                curves.append(curve)
        steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
        if steps:
            ax_curve.plot(steps, [sum(c[s] for c in curves) / len(curves) for s in steps],
                          marker='o', label=f"{label} ({len(curves)} run{'s' * (len(curves) > 1)})")
    ax_curve.set_xlabel('iteration')
    ax_curve.set_ylabel(f'{curve_key} (val, mean over seeds)')
    ax_curve.grid(alpha=0.3)
    if ax_curve.lines:
        ax_curve.legend(fontsize=8)
    labels = list(values)
    for i, label in enumerate(labels):
        ys = [v for v in values[label].values() if v is not None]
        if not ys:
            continue
        mean = sum(ys) / len(ys)
        std = math.sqrt(sum((y - mean) ** 2 for y in ys) / (len(ys) - 1)) if len(ys) > 1 else 0
        ax_final.errorbar(i, mean, yerr=std, fmt='o', color='C0', capsize=4)
        ax_final.plot([i + 0.15] * len(ys), ys, 'k.', ms=5)
    ax_final.set_xlim(-0.5, len(labels) - 0.5)
    ax_final.set_xticks(range(len(labels)))
    ax_final.set_xticklabels(labels, rotation=30, ha='right', fontsize=8)
    ax_final.set_ylabel(f'final {metric}: mean +- std, dots: seeds')
    ax_final.grid(axis='y', alpha=0.3)
    for i, row in enumerate(paired):
        if row.get('mean') is None:
            continue
        if row.get('low') is not None:
            ax_diff.errorbar(i, row['mean'], yerr=[[row['mean'] - row['low']],
                                                   [row['high'] - row['mean']]],
                             fmt='o', color='C3', capsize=4)
        else:
            ax_diff.plot(i, row['mean'], 'o', color='C3')
        ax_diff.plot([i + 0.15] * len(row['diffs']), row['diffs'], 'k.', ms=5)
    ax_diff.axhline(0.0, color='grey', lw=1)
    ax_diff.set_xlim(-0.5, len(paired) - 0.5)
    ax_diff.set_xticks(range(len(paired)))
    ax_diff.set_xticklabels([r['loss'] for r in paired], rotation=30, ha='right', fontsize=8)
    base = paired[0]['baseline'] if paired else 'baseline'
    ax_diff.set_ylabel(f'{metric} - {base}: mean, 95% interval, seeds')
    ax_diff.grid(axis='y', alpha=0.3)
    return _save(fig, out_file, title)
