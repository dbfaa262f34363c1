"""The synthetic dataset's tiny-object mode: AI-TOD-like sizes, valid COCO, and the
default mode unchanged by the new option."""
import json
import os.path as osp

import numpy as np
import pytest

from detloss_plugin.datasets import synthetic
from detloss_plugin.datasets.synthetic import TINY_OBJECTS, generate_synthetic_coco


def _sizes(out):
    with open(osp.join(out, 'annotations', 'instances_train.json')) as f:
        coco = json.load(f)
    boxes = np.array([a['bbox'] for a in coco['annotations']], float)
    return coco, np.sqrt(boxes[:, 2] * boxes[:, 3])


def test_tiny_mode_has_an_aitod_like_size_mix(tmp_path):
    out = str(tmp_path / 'tiny')
    generate_synthetic_coco(out, seed=0, num_train=40, num_val=2, fmt='png', **TINY_OBJECTS)
    coco, size = _sizes(out)
    per_image = len(coco['annotations']) / len(coco['images'])
    assert 10 <= per_image <= 30
    # AI-TOD: 12.5 % very tiny (< 8 px), 73.4 % tiny (8-16), 14.1 % >= 16; mean 12.8
    assert 0.06 < (size < 8).mean() < 0.22
    assert 0.6 < ((size >= 8) & (size < 16)).mean() < 0.85
    assert 0.05 < (size >= 16).mean() < 0.25
    assert 10 < size.mean() < 14 and size.max() <= 32
    for ann in coco['annotations']:
        x, y, w, h = ann['bbox']
        assert w >= 1 and h >= 1 and x >= 0 and y >= 0 and x + w <= 192 and y + h <= 192


def test_default_mode_is_unchanged(tmp_path):
    """Passing the default size_distribution draws exactly the same images."""
    rng_a, rng_b = np.random.default_rng([0, 0, 0]), np.random.default_rng([0, 0, 0])
    img_a, obj_a = synthetic.render_image(rng_a, 128, 128)
    img_b, obj_b = synthetic.render_image(rng_b, 128, 128, size_distribution='log_uniform')
    assert np.array_equal(img_a, img_b) and obj_a == obj_b


def test_bad_size_distribution(tmp_path):
    with pytest.raises(ValueError, match='size_distribution'):
        generate_synthetic_coco(str(tmp_path / 'x'), num_train=1, num_val=0,
                                size_distribution='uniform')


def test_make_dataset_tiny_flag(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'make_dataset', osp.join(osp.dirname(__file__), '..', '..', 'tools', 'make_dataset.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = str(tmp_path / 'tiny')
    tool.main(['--tiny', '--out', out, '--num-train', '3', '--num-val', '1'])
    with open(osp.join(out, 'dataset_info.json')) as f:
        info = json.load(f)
    assert info['size_distribution'] == 'aitod' and info['image_size'] == [192, 192]
