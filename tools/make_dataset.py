#!/usr/bin/env python
"""Generate detloss's synthetic detection dataset (COCO format) from a seed.

    python tools/make_dataset.py --out data/synthetic_coco --seed 0 --num-train 800 --num-val 200

    python tools/make_dataset.py --tiny --out data/tiny_coco     # tiny objects, AI-TOD-like

Writes ``<out>/{train,val}/*.jpg`` and ``<out>/annotations/instances_{train,val}.json``.
Nothing is written when ``<out>`` already holds the dataset with the same parameters
(``--force`` regenerates). See :mod:`detloss_plugin.datasets.synthetic`.
"""
import argparse
import os.path as osp
import time

import detloss_plugin  # noqa: F401

from detloss_plugin.datasets import synthetic  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Generate the synthetic COCO-format dataset')
    p.add_argument('--out', default='data/synthetic_coco', help='output folder')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--num-train', type=int, default=800)
    p.add_argument('--num-val', type=int, default=200)
    p.add_argument('--image-size', type=int, nargs='+', default=None,
                   help='W [H] in pixels (default 128 128; 192 192 with --tiny)')
    p.add_argument('--tiny', action='store_true',
                   help='tiny objects: 8-30 per image, sqrt(area) 2-32 px with an '
                        'AI-TOD-like distribution (mean ~12 px)')
    p.add_argument('--format', choices=['jpg', 'png'], default='jpg')
    p.add_argument('--min-size', type=int, default=None, help='smallest object side (px)')
    p.add_argument('--max-size', type=int, default=None, help='largest object side (px)')
    p.add_argument('--max-objects', type=int, default=None, help='objects per image (max)')
    p.add_argument('--force', action='store_true', help='regenerate even if up to date')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    preset = dict(synthetic.TINY_OBJECTS) if args.tiny else {}
    image_size = args.image_size or list(preset.pop('image_size', (128,)))
    preset.pop('image_size', None)
    if len(image_size) not in (1, 2):
        raise SystemExit(f'--image-size takes W or W H, got {image_size}')
    size = tuple(image_size) * (2 if len(image_size) == 1 else 1)
    kwargs = dict(preset)
    kwargs.update({k: v for k, v in dict(min_size=args.min_size, max_size=args.max_size,
                                         max_objects=args.max_objects).items()
                   if v is not None})
    t0 = time.time()
    fn = synthetic.generate_synthetic_coco if args.force else synthetic.ensure_synthetic_coco
    fn(args.out, seed=args.seed, num_train=args.num_train, num_val=args.num_val,
       image_size=size, fmt=args.format, progress=True, **kwargs)
    print(f'[detloss dataset] ready in {time.time() - t0:.1f} s: {osp.abspath(args.out)}')


if __name__ == '__main__':
    main()
