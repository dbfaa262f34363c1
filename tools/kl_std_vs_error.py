#!/usr/bin/env python
"""Is KLBBoxHead's predicted standard deviation a localisation confidence? Reads the
predictions that ``tools/test.py CONFIG CKPT --out preds.pkl`` dumped (``bboxes_std``
included) and the COCO annotations, matches each prediction with score >= ``--score-thr``
to the same-class ground truth of highest IoU (>= ``--iou-thr``), and reports, per
coordinate, the Spearman rank correlation between |prediction - ground truth| and the
predicted std, and the mean error by std quartile.

    python tools/kl_std_vs_error.py preds.pkl data/synthetic_coco/annotations/instances_val.json
"""
import argparse
import json
import pickle

import numpy as np


def _iou(box, gts):
    iw = np.clip(np.minimum(box[2], gts[:, 2]) - np.maximum(box[0], gts[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], gts[:, 3]) - np.maximum(box[1], gts[:, 1]), 0, None)
    inter = iw * ih
    union = (box[2] - box[0]) * (box[3] - box[1]) \
        + (gts[:, 2] - gts[:, 0]) * (gts[:, 3] - gts[:, 1]) - inter
    return inter / np.maximum(union, 1e-12)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('predictions')
    p.add_argument('ann_file')
    p.add_argument('--score-thr', type=float, default=0.3)
    p.add_argument('--iou-thr', type=float, default=0.5)
    args = p.parse_args(argv)
    with open(args.predictions, 'rb') as f:
        preds = pickle.load(f)
    with open(args.ann_file) as f:
        ann = json.load(f)
    cat_ids = sorted(c['id'] for c in ann['categories'])
    gts = {}
    for a in ann['annotations']:
        x, y, w, h = a['bbox']
        gts.setdefault(a['image_id'], []).append((cat_ids.index(a['category_id']),
                                                  [x, y, x + w, y + h]))
    errors, stds = [], []
    for pred in preds:
        inst = pred['pred_instances']
        if 'bboxes_std' not in inst:
            raise SystemExit('the predictions have no bboxes_std: not a KLBBoxHead model?')
        boxes, scores = inst['bboxes'].numpy(), inst['scores'].numpy()
        labels, std = inst['labels'].numpy(), inst['bboxes_std'].numpy()
        for box, score, label, sd in zip(boxes, scores, labels, std):
            cands = np.array([g for lab, g in gts.get(pred['img_id'], []) if lab == label])
            if score < args.score_thr or len(cands) == 0:
                continue
            ious = _iou(box, cands)
            if ious.max() >= args.iou_thr:
                errors.append(np.abs(box - cands[ious.argmax()]))
                stds.append(sd)
    errors, stds = np.concatenate(errors), np.concatenate(stds)
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    rho = np.corrcoef(rank(errors), rank(stds))[0, 1]
    quart = np.digitize(stds, np.quantile(stds, [0.25, 0.5, 0.75]))
    print(f'{len(errors) // 4} matched boxes (score >= {args.score_thr}, IoU >= '
          f'{args.iou_thr}); Spearman(|error|, std) over coordinates = {rho:.3f}')
    for k in range(4):
        m = quart == k
        print(f'std quartile {k + 1}: mean std {stds[m].mean():.2f} px, '
              f'mean |error| {errors[m].mean():.2f} px')


if __name__ == '__main__':
    main()
