"""detloss's same-named losses as drop-in replacements on mmdet's own model zoo.

One config per detector family of the installed mmdet, run by
:func:`tools.zoo_matrix.run_family` (the code that writes docs/compatibility.md): the
losses switched to ``detloss_plugin.<same name>`` give every loss term of mmdet's
detector (rel. 1e-5) on the same weights and batch, with finite gradients; every
IoU-family position takes each detloss IoU-family loss; every ``nms`` takes
``diou_nms``; Dynamic R-CNN is refused with the reason.
"""
import json

import pytest

pytest.importorskip('mmdet')
pytestmark = pytest.mark.integration

from tools import zoo_matrix  # noqa: E402  (after the importorskip)

NEEDS = {'PAA': 'sklearn'}


@pytest.mark.parametrize('family', [f for f in zoo_matrix.FAMILIES if f != 'Dynamic R-CNN'])
def test_family_agrees_with_mmdet(family):
    if family in NEEDS:
        pytest.importorskip(NEEDS[family])
    record = zoo_matrix.run_family(family)
    assert record['swapped'], f'{family}: no loss to swap in {record["config"]}'
    differing = {k: t for k, t in record['terms'].items() if not t['agrees']}
    assert not differing, differing
    assert record['grads_finite']
    assert record['status'] == 'agrees'
    bad = {k: v for k, v in record['iou_sweep'].items() if v != 'ok'}
    assert not bad, bad
    # 'no nms': the family has none (DETR-like, YOLACT's fast NMS, SOLO's matrix NMS);
    # Guided Anchoring's prediction needs mmcv's masked convolution, absent on the CPU
    assert record['diou_nms'] in ('ok', 'no nms') or record['diou_nms'].startswith(
        "mmdet's own predict fails here too"), record['diou_nms']


def test_dynamic_rcnn_is_refused_with_the_reason():
    record = zoo_matrix.run_family('Dynamic R-CNN')
    assert record['status'] == 'refused'
    assert "asserts that loss_bbox is an instance of mmdet's SmoothL1Loss" in record['reason']
    assert "keep type='SmoothL1Loss'" in record['reason']
    # and forcing the swap does fail, in mmdet's own assertion
    assert record['forced_build'].startswith('AssertionError')


def test_the_committed_matrix_is_rendered_from_the_committed_results():
    with open(zoo_matrix.JSON_PATH) as f:
        data = json.load(f)
    with open(zoo_matrix.DOC_PATH) as f:
        doc = f.read()
    assert doc == zoo_matrix.render(data['families'], data.get('seconds'),
                                    data.get('cpu_seconds'))
    assert {r['family'] for r in data['families']} == set(zoo_matrix.FAMILIES)
