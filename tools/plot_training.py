#!/usr/bin/env python
"""Draw a training run: loss and mAP curves, and predictions on a few val images.

    python tools/plot_training.py WORK_DIR [--out WORK_DIR/report.png]
        [--pred-json PREFIX.bbox.json --ann-file instances_val.json --img-dir val/]

The curves come from the run's ``<WORK_DIR>/<timestamp>/vis_data/scalars.json`` (the
validation losses as dots, when the config uses ``detloss_plugin.ValLossLoop``); the
predictions from a COCO results file (``tools/test.py --json-prefix PREFIX`` writes
``PREFIX.bbox.json``). See :mod:`detloss_plugin.engine.plots`.
"""
import argparse
import os.path as osp

import detloss_plugin  # noqa: F401

from detloss_plugin.engine.plots import plot_training_report  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description='Plot curves and predictions of a run')
    p.add_argument('work_dir')
    p.add_argument('--out', help='output image (default WORK_DIR/report.png)')
    p.add_argument('--pred-json', help='COCO results file with the predictions')
    p.add_argument('--ann-file', help='COCO annotation file of the images')
    p.add_argument('--img-dir', help='folder of the images')
    p.add_argument('--num-images', type=int, default=4)
    p.add_argument('--score-thr', type=float, default=0.3)
    p.add_argument('--title')
    args = p.parse_args(argv)
    if args.pred_json and not (args.ann_file and args.img_dir):
        p.error('--pred-json needs --ann-file and --img-dir')
    from detloss_plugin.datasets import PALETTE
    out = args.out or osp.join(args.work_dir, 'report.png')
    plot_training_report(args.work_dir, out, pred_json=args.pred_json,
                         ann_file=args.ann_file, img_dir=args.img_dir,
                         num_images=args.num_images, score_thr=args.score_thr,
                         palette=PALETTE, title=args.title)
    print(f'[detloss plot] wrote {osp.abspath(out)}')


if __name__ == '__main__':
    main()
