"""The synthetic COCO-format dataset: valid COCO, boxes inside images and tight around
the drawn shapes, deterministic from the seed, readable by mmdet's CocoDataset."""
import filecmp
import json
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from detloss_plugin.datasets import (CLASSES, ensure_synthetic_coco, generate_synthetic_coco,
                                     render_image)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SMALL = dict(num_train=6, num_val=3, image_size=(64, 48), min_size=8, max_size=32)


def _load(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def small_png(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('synth') / 'png')
    generate_synthetic_coco(out, seed=3, fmt='png', **SMALL)
    return out


def test_pycocotools_loads_it_and_boxes_are_inside(small_png):
    from pycocotools.coco import COCO
    for split, count in (('train', 6), ('val', 3)):
        coco = COCO(osp.join(small_png, 'annotations', f'instances_{split}.json'))
        cats = coco.loadCats(coco.getCatIds())
        assert [c['name'] for c in cats] == list(CLASSES)
        assert len(coco.getImgIds()) == count
        assert len(coco.getAnnIds()) >= count  # at least one object per image
        for img in coco.loadImgs(coco.getImgIds()):
            assert (img['width'], img['height']) == (64, 48)
            with Image.open(osp.join(small_png, split, img['file_name'])) as im:
                assert im.size == (64, 48)
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=img['id'])):
                x, y, w, h = ann['bbox']
                assert 0 <= x and 0 <= y and w > 0 and h > 0
                assert x + w <= 64 and y + h <= 48
                assert 0 < ann['area'] <= w * h
                assert ann['iscrowd'] == 0
                assert ann['category_id'] in coco.getCatIds()


def _changed_pixels(seed, **kwargs):
    """Render with clutter and noise off; return (objects, mask of pixels that differ
    from the background, which is re-drawn from the same generator state)."""
    from detloss_plugin.datasets.synthetic import _background
    img, objects = render_image(np.random.default_rng(seed), 96, 96, max_clutter=0,
                                noise_std=(0.0, 0.0), **kwargs)
    background = _background(np.random.default_rng(seed), 96, 96)  # drawn first
    background = np.clip(background, 0, 255).round()
    return objects, np.abs(img - background).sum(-1) > 30


@pytest.mark.parametrize('seed', [0, 1, 2, 3, 4, 5])
def test_box_is_tight_around_a_single_shape(seed):
    objects, changed = _changed_pixels(seed, min_objects=1, max_objects=1, min_size=12,
                                       max_size=40)
    assert len(objects) == 1
    x, y, w, h = objects[0]['bbox']
    inside = changed[y:y + h, x:x + w]
    # every border row and column of the box holds shape pixels (no slack) ...
    assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
    # ... and nothing changed outside it (2 px margin: one image in four is blurred)
    outside = changed.copy()
    outside[max(0, y - 2):y + h + 2, max(0, x - 2):x + w + 2] = False
    assert not outside.any()
    assert objects[0]['area'] <= w * h


def test_overlapping_shapes_get_boxes_of_their_visible_part():
    objects, changed = _changed_pixels(7, min_objects=6, max_objects=6, min_size=16,
                                       max_size=48)
    assert len(objects) >= 3
    for obj in objects:
        x, y, w, h = obj['bbox']
        inside = changed[y:y + h, x:x + w]
        assert inside[0].any() and inside[-1].any()
        assert inside[:, 0].any() and inside[:, -1].any()


def test_same_seed_same_dataset_and_prefix_stability(tmp_path, small_png):
    again = str(tmp_path / 'again')
    generate_synthetic_coco(again, seed=3, fmt='png', **SMALL)
    for rel in ('annotations/instances_train.json', 'annotations/instances_val.json',
                'train/000000.png', 'train/000005.png', 'val/000002.png'):
        assert filecmp.cmp(osp.join(small_png, rel), osp.join(again, rel), shallow=False), rel
    # a different seed gives different images and boxes
    other = str(tmp_path / 'other')
    generate_synthetic_coco(other, seed=4, fmt='png', **SMALL)
    assert not filecmp.cmp(osp.join(small_png, 'train/000000.png'),
                           osp.join(other, 'train/000000.png'), shallow=False)
    assert _load(osp.join(small_png, 'annotations/instances_train.json'))['annotations'] != \
        _load(osp.join(other, 'annotations/instances_train.json'))['annotations']
    # image i does not depend on how many images are generated
    fewer = str(tmp_path / 'fewer')
    generate_synthetic_coco(fewer, seed=3, fmt='png', **dict(SMALL, num_train=2, num_val=1))
    assert filecmp.cmp(osp.join(small_png, 'train/000001.png'),
                       osp.join(fewer, 'train/000001.png'), shallow=False)
    big = _load(osp.join(small_png, 'annotations/instances_train.json'))
    small = _load(osp.join(fewer, 'annotations/instances_train.json'))
    first_two = [a for a in big['annotations'] if a['image_id'] <= 2]
    assert [a['bbox'] for a in first_two] == [a['bbox'] for a in small['annotations']]


def test_dataset_has_variety(tmp_path):
    out = str(tmp_path / 'variety')
    generate_synthetic_coco(out, seed=0, num_train=40, num_val=1, image_size=(128, 128))
    anns = _load(osp.join(out, 'annotations/instances_train.json'))['annotations']
    labels = {a['category_id'] for a in anns}
    assert labels == {1, 2, 3, 4}
    w = np.array([a['bbox'][2] for a in anns], float)
    h = np.array([a['bbox'][3] for a in anns], float)
    assert w.max() / w.min() > 3 and (w / h).max() > 1.8 and (w / h).min() < 0.55
    # some boxes overlap
    per_image = {}
    for a in anns:
        per_image.setdefault(a['image_id'], []).append(a['bbox'])
    def overlap(a, b):
        return min(a[0] + a[2], b[0] + b[2]) > max(a[0], b[0]) and \
            min(a[1] + a[3], b[1] + b[3]) > max(a[1], b[1])
    assert any(overlap(a, b) for boxes in per_image.values()
               for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_ensure_regenerates_only_on_change(tmp_path):
    out = str(tmp_path / 'ens')
    kw = dict(num_train=2, num_val=1, image_size=(32, 32), min_size=6, max_size=16)
    assert ensure_synthetic_coco(out, seed=1, **kw) is True
    assert ensure_synthetic_coco(out, seed=1, **kw) is False
    assert ensure_synthetic_coco(out, seed=2, **kw) is True
    info = _load(osp.join(out, 'dataset_info.json'))
    assert info['seed'] == 2 and info['num_train'] == 2


@pytest.mark.parametrize('kwargs, match', [
    (dict(fmt='gif'), 'fmt'),
    (dict(num_train=0), 'num_train'),
    (dict(min_size=30, max_size=20), 'min_size'),
    (dict(image_size=(8, 64)), r'image_size\[0\]'),
    (dict(max_size=200), 'max_size'),
    (dict(min_objects=3, max_objects=2), 'min_objects'),
])
def test_bad_arguments_are_named(tmp_path, kwargs, match):
    args = dict(num_train=1, num_val=0, image_size=(64, 64), min_size=8, max_size=32)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        generate_synthetic_coco(str(tmp_path / 'bad'), **args)


def test_cli_and_mmdet_coco_dataset(tmp_path):
    out = str(tmp_path / 'cli')
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'make_dataset.py'), '--out', out, '--seed',
         '5', '--num-train', '3', '--num-val', '2', '--image-size', '64', '--min-size', '8',
         '--max-size', '32'], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert 'train: 3 images' in proc.stdout
    assert sorted(os.listdir(osp.join(out, 'train'))) == ['000000.jpg', '000001.jpg',
                                                          '000002.jpg']
    from mmdet.datasets import CocoDataset
    ds = CocoDataset(data_root=out + '/', ann_file='annotations/instances_train.json',
                     data_prefix=dict(img='train/'), metainfo=dict(classes=CLASSES),
                     pipeline=[], filter_cfg=dict(filter_empty_gt=True))
    coco = _load(osp.join(out, 'annotations/instances_train.json'))
    assert len(ds) == 3
    info = ds.get_data_info(0)
    anns = [a for a in coco['annotations'] if a['image_id'] == 1]
    assert len(info['instances']) == len(anns)
    x, y, w, h = anns[0]['bbox']
    # mmdet turns COCO's [x, y, w, h] into [x1, y1, x2, y2]
    assert info['instances'][0]['bbox'] == [x, y, x + w, y + h]
    assert info['instances'][0]['bbox_label'] == anns[0]['category_id'] - 1
