"""tools/simulate_regression.py: the DIoU paper's regression simulation.

The case set, the update rule and its schedule, the transcription of the authors'
MATLAB gradients (against autograd where the maths coincide, against hand values where
it does not), and reduced runs of both gradient modes.
"""
import json
import math
from functools import partial
import os.path as osp

import pytest
import torch

from detloss_plugin import functional as dlf
from tools import simulate_regression as sim


# ------------------------------------------------------------------------- the cases
def test_paper_case_count_and_layout():
    anchors, targets = sim.make_cases(sim.sample_points(5000, dtype=torch.float32))
    assert anchors.shape == targets.shape == (1_715_000, 4)
    # one point's 343 cases: target ratio (slowest), scale, anchor ratio (fastest)
    a, t = anchors[:343].double().view(7, 7, 7, 4), targets[:343].double().view(7, 7, 7, 4)
    ratios = torch.tensor(sim.ASPECT_RATIOS, dtype=torch.float64)
    scales = torch.tensor(sim.SCALES, dtype=torch.float64)
    torch.testing.assert_close(t[..., 2] * t[..., 3], torch.ones(7, 7, 7, dtype=torch.float64),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(t[:, 0, 0, 2] / t[:, 0, 0, 3], ratios, atol=1e-5, rtol=1e-5)
    assert (t[..., :2] == 10).all()
    # anchor area S x (target area 1), anchor ratio on the last axis, centre the point's
    torch.testing.assert_close(a[0, :, 0, 2] * a[0, :, 0, 3], scales, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(a[3, 3, :, 2] / a[3, 3, :, 3], ratios, atol=1e-5, rtol=1e-5)
    assert (a[..., :2] == anchors[0, :2].double()).all()
    assert not torch.equal(anchors[0, :2], anchors[343, :2])
    # the authors' (w, h) for ratio 1:3 at area 1 are (sqrt(3)/3, sqrt(3))
    torch.testing.assert_close(t[1, 0, 0, 2:], torch.tensor([3 ** 0.5 / 3, 3 ** 0.5],
                                                            dtype=torch.float64))


def test_disk_sampling_is_uniform_in_the_disk():
    pts = sim.sample_points(40000, seed=1)
    d = pts - 10
    r = d.norm(dim=1)
    assert r.max() <= 3.0
    # uniform in area: P(r < 1.5) = (1.5 / 3)^2 = 0.25, P(r < 3 / sqrt(2)) = 0.5;
    # binomial sd at n = 40000 is < 0.0025
    assert abs(float((r < 1.5).double().mean()) - 0.25) < 0.012
    assert abs(float((r < 3 / 2 ** 0.5).double().mean()) - 0.5) < 0.012
    # uniform in angle: each quadrant 1/4
    for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
        frac = float(((d[:, 0] * sx > 0) & (d[:, 1] * sy > 0)).double().mean())
        assert abs(frac - 0.25) < 0.012
    assert torch.equal(pts, sim.sample_points(40000, seed=1))
    assert not torch.equal(pts[:10], sim.sample_points(10, seed=2))


def test_learning_rate_schedule():
    assert [sim.learning_rate(k) for k in (1, 160, 161, 180, 181, 200)] == \
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]


def test_update_rule_errors_and_chunking():
    anchors, targets = sim.make_cases(sim.sample_points(3))

    def halfway(b, t):
        # s = t - b with IoU = 1: B_t = B + eta (t - B), so every error shrinks by
        # (1 - eta) per step: E(200) = E(0) 0.9^160 0.99^20 0.999^20
        return t - b, torch.ones(b.shape[0], dtype=b.dtype)

    errors, final, non_finite = sim.regress(halfway, anchors, targets)
    e0 = float((anchors - targets).abs().sum())
    assert errors.shape == (201,) and non_finite == 0
    assert math.isclose(float(errors[0]), e0, rel_tol=1e-12)
    expected = e0 * 0.9 ** 160 * 0.99 ** 20 * 0.999 ** 20
    # (rounding: coordinates ~10 against errors ~1e-4 after 200 steps)
    assert math.isclose(float(errors[-1]), expected, rel_tol=1e-7)
    assert math.isclose(float(final.sum()), expected, rel_tol=1e-7)
    # a smaller chunk gives the same result
    errors7, final7, _ = sim.regress(halfway, anchors, targets, chunk=7)
    torch.testing.assert_close(errors7, errors)
    torch.testing.assert_close(final7, final)


# ------------------------------------------------- the authors' MATLAB gradients
def _random_pairs(n, seed, overlap=None):
    """(x, y, w, h) boxes in float64; ``overlap`` True/False keeps only overlapping /
    disjoint pairs."""
    g = torch.Generator().manual_seed(seed)
    pred = torch.cat([10 + 3 * (torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5),
                      0.3 + 2 * torch.rand(n, 2, generator=g, dtype=torch.float64)], 1)
    target = torch.cat([torch.full((n, 2), 10.0, dtype=torch.float64),
                        0.3 + 2 * torch.rand(n, 2, generator=g, dtype=torch.float64)], 1)
    if overlap is not None:
        iou = dlf.box_pair_geometry(sim.xywh_to_xyxy(pred), sim.xywh_to_xyxy(target)).iou
        keep = (iou > 1e-3) if overlap else (iou == 0)
        pred, target = pred[keep], target[keep]
    return pred, target


def _authors(name, pred, target, **flags):
    """The authors' direction ``name`` (with correction flags) on (x, y, w, h) boxes."""
    return sim.AUTHORS_DIRECTIONS[name](sim.AuthorsPair(pred, target), **flags)


def _ascent(loss_fn, pred, target):
    """minus autograd's gradient of loss_fn on (x, y, w, h)."""
    s, _ = sim.autograd_direction(loss_fn, pred, target)
    return s


def _authors_halved(s):
    """The authors' direction with their dropped 1/2 (to_xywh.m) put back on w, h."""
    return s * torch.tensor([1, 1, 0.5, 0.5], dtype=s.dtype)


@pytest.mark.parametrize('name,loss_fn', [('IoU', dlf.iou_loss), ('GIoU', dlf.giou_loss)])
def test_authors_iou_giou_match_autograd_on_overlapping_boxes(name, loss_fn):
    # For overlapping boxes dIOU.m / dGIOU.m are the true derivatives on (t, b, l, r);
    # only to_xywh.m doubles the w, h components.
    pred, target = _random_pairs(400, seed=3, overlap=True)
    assert len(pred) > 100
    s = _authors(name, pred, target)
    expected = _ascent(loss_fn, pred, target)
    torch.testing.assert_close(_authors_halved(s), expected, atol=1e-5, rtol=1e-4)
    # ... so without the correction the w, h components are twice the true ones
    assert torch.allclose(s[:, 2:], 2 * expected[:, 2:], atol=1e-5, rtol=1e-4)


def test_authors_iou_is_zero_for_disjoint_boxes():
    pred, target = _random_pairs(400, seed=4, overlap=False)
    assert len(pred) > 50
    assert (_authors('IoU', pred, target) == 0).all()


def test_authors_giou_on_disjoint_boxes_uses_the_unclamped_intersection():
    # dGIOU.m for disjoint boxes: d(U / C) with U = |B| + |B_gt| - I, I the product of
    # the intersection's (negative) sides, i.e. the gradient of U_signed / C, which is
    # not the GIoU's (there I = 0).
    pred, target = _random_pairs(600, seed=5, overlap=False)

    def signed_giou_loss(p, t):
        px1, py1, px2, py2 = p.unbind(-1)
        tx1, ty1, tx2, ty2 = t.unbind(-1)
        inter = ((torch.minimum(px2, tx2) - torch.maximum(px1, tx1))
                 * (torch.minimum(py2, ty2) - torch.maximum(py1, ty1)))
        union = (px2 - px1) * (py2 - py1) + (tx2 - tx1) * (ty2 - ty1) - inter
        enclose = ((torch.maximum(px2, tx2) - torch.minimum(px1, tx1))
                   * (torch.maximum(py2, ty2) - torch.minimum(py1, ty1)))
        return -union / enclose

    s = _authors('GIoU', pred, target)
    torch.testing.assert_close(_authors_halved(s), _ascent(signed_giou_loss, pred, target))
    true = _ascent(partial(dlf.giou_loss, eps=0.0), pred, target)
    assert (_authors_halved(s) - true).abs().max() > 0.05


def test_authors_giou_side_by_side_boxes_hand_values():
    # target (10, 10, 1, 1), prediction (12, 10, 1, 1): side by side, gap 1, heights
    # aligned. Authors: I = (10.5 - 11.5) * 1 = -1, U = 1 + 1 + 1 = 3, C = 3 * 1 = 3, and
    # for any gap U / C = (w + w_gt + gap) h / ((w + w_gt + gap) h) = 1: no x or w step.
    # True GIoU: U = 2, d(U/C)/dx = -U / C^2 * dC/dx = -2/9 and
    # d(U/C)/dw = (C * h - U * dC/dw) / C^2 = (3 - 2 * 0.5) / 9 = 2/9.
    pred = torch.tensor([[12.0, 10.0, 1.0, 1.0]], dtype=torch.float64)
    target = torch.tensor([[10.0, 10.0, 1.0, 1.0]], dtype=torch.float64)
    s = _authors('GIoU', pred, target)
    assert s[0, 0] == 0 and s[0, 2] == 0
    fixed = _authors('GIoU', pred, target, half=True, clamp=True)
    torch.testing.assert_close(fixed[0, [0, 2]], torch.tensor([-2 / 9, 2 / 9],
                                                              dtype=torch.float64))


def test_authors_diou_matches_autograd_inside_the_target():
    # A prediction strictly inside its target owns no edge of the enclosing box: the
    # authors' enclosing-box terms vanish, and dDIOU.m is the true derivative up to
    # to_xywh's factor 2 on w, h.
    g = torch.Generator().manual_seed(6)
    target = torch.cat([torch.full((300, 2), 10.0, dtype=torch.float64),
                        2 + torch.rand(300, 2, generator=g, dtype=torch.float64)], 1)
    wh = target[:, 2:] * (0.2 + 0.5 * torch.rand(300, 2, generator=g, dtype=torch.float64))
    room = (target[:, 2:] - wh) / 2
    xy = 10 + room * 0.9 * (2 * torch.rand(300, 2, generator=g, dtype=torch.float64) - 1)
    pred = torch.cat([xy, wh], 1)
    s = _authors('DIoU', pred, target)
    expected = _ascent(partial(dlf.diou_loss, eps=0.0), pred, target)
    torch.testing.assert_close(_authors_halved(s), expected)


def test_authors_diou_enclosing_term_hand_values():
    # target (10, 10, 1, 1), prediction (12, 10, 1, 0.8): disjoint, the prediction owns
    # only the right edge of the enclosing box. Cw = 12.5 - 9.5 = 3, Ch = 1, c^2 = 10,
    # rho^2 = 4; IoU = 0, so only the distance term acts.
    # Authors: d Cw/dx and d Ch/dx both = 1 (one shared record), so d c^2/dx =
    # 2*3 + 2*1 = 8 and dx = (2 (10 - 12) 10 - 8 * 4) / 100 = -0.72; d Cw/dw = d Ch/dw
    # = 0.5, d c^2/dw = 3 + 1 = 4, dw = 4 * 4 / 100 = 0.16; dy = dh = 0.
    # True ascent: -d(rho^2/c^2)/dx = -(2 * 2 / 10 - 4 * (2*3*1) / 100) = -0.16 and
    # -d/dw = 4 * (2*3*0.5) / 100 = 0.12.
    pred = torch.tensor([[12.0, 10.0, 1.0, 0.8]], dtype=torch.float64)
    target = torch.tensor([[10.0, 10.0, 1.0, 1.0]], dtype=torch.float64)
    s = _authors('DIoU', pred, target)
    torch.testing.assert_close(s, torch.tensor([[-0.72, 0.0, 0.16, 0.0]], dtype=torch.float64))
    true = _ascent(partial(dlf.diou_loss, eps=0.0), pred, target)
    torch.testing.assert_close(true, torch.tensor([[-0.16, 0.0, 0.12, 0.0]],
                                                  dtype=torch.float64))


def test_authors_ciou_aspect_term_is_detloss_authors_gradient():
    # dCIOU.m - dDIOU.m = alpha * 8/pi^2 (atan(w_gt/h_gt) - atan(w/h)) (0, 0, h, -w):
    # the gradient of alpha v with dv/dw, dv/dh without 1/(w^2 + h^2), which detloss's
    # ciou_loss(authors_gradient=True) reproduces (alpha without gradient in both).
    pred, target = _random_pairs(500, seed=7)
    s = _authors('CIoU', pred, target) - _authors('DIoU', pred, target)

    def aspect_only(p, t):
        return (dlf.ciou_loss(p, t, authors_gradient=True, eps=0.0)
                - dlf.diou_loss(p, t, eps=0.0))

    torch.testing.assert_close(s, _ascent(aspect_only, pred, target), atol=1e-9, rtol=1e-6)
    assert (s[:, :2] == 0).all() and s[:, 2:].abs().max() > 1e-3


def test_authors_iou_gradient_is_zero_for_flipped_boxes():
    # a flipped prediction (t > b or l > r) never overlaps, so dIOU.m's branch for
    # flipped boxes has nothing to act on: the gradient is 0 whatever the branch does
    target = torch.tensor([[10.0, 10.0, 1.0, 1.0]] * 3, dtype=torch.float64)
    pred = torch.tensor([[9.85, 10.4, 0.9, -0.4],     # h < 0 (t = 10.6 > b = 10.2)
                         [9.85, 10.4, -0.9, 0.8],     # w < 0
                         [9.85, 10.4, 0.9, 0.8]], dtype=torch.float64)  # overlapping
    d = torch.stack(sim.authors_diou_tblr(sim.AuthorsPair(pred, target)), -1)
    assert (d[:2] == 0).all()
    assert (d[2] != 0).all()


# ------------------------------------------------------------------- reduced runs
def test_authors_gradients_reproduce_the_papers_order():
    # The paper's figures / an independent full re-run with these gradients: final error
    # per case IoU 3.42, GIoU 0.89, DIoU 0.0024, CIoU 0.0024.
    run = sim.simulate('authors', points=12, seed=0)
    assert run['cases'] == 12 * 343
    fin = {k: r['final_error_per_case'] for k, r in run['losses'].items()}
    assert fin['IoU'] > 3 * fin['GIoU']
    assert fin['GIoU'] > 100 * fin['DIoU']
    assert abs(fin['CIoU'] - fin['DIoU']) < 0.2 * fin['DIoU']
    assert 2.5 < fin['IoU'] < 4.5
    assert 0.6 < fin['GIoU'] < 1.2
    assert 0.001 < fin['DIoU'] < 0.005
    assert all(r['non_finite'] == 0 for r in run['losses'].values())


def test_autograd_losses_with_a_disjoint_gradient_converge():
    run = sim.simulate('autograd', points=12, seed=0)
    losses = run['losses']
    assert set(losses) == set(sim.autograd_losses())
    with_gradient = [k for k, r in losses.items() if r['disjoint_gradient']]
    converging = [k for k in with_gradient if k not in sim.SLOW_LOSSES]
    assert {'GIoU', 'DIoU', 'CIoU', 'EIoU', 'L1', 'Smooth L1', 'L2', 'Focal L1'} \
        <= set(converging)
    for name in converging:
        assert losses[name]['final_error_per_case'] < 0.05, name
    for name in with_gradient:
        assert losses[name]['non_finite'] == 0, name
        # the slow ones (sim.SLOW_LOSSES, with the reason) still do better than IoU
        assert losses[name]['final_error_per_case'] < losses['IoU']['final_error_per_case']
    # plain IoU has no gradient for the ~90% of cases that start disjoint
    assert losses['IoU']['final_error_per_case'] > 2.0
    e0 = losses['IoU']['errors'][0] / run['cases']
    assert losses['IoU']['final_error_per_case'] > 0.8 * e0


def test_optional_losses_are_picked_up(monkeypatch):
    calls = []

    def fake_siou(pred, target):
        calls.append(pred.shape)
        return dlf.diou_loss(pred, target)

    monkeypatch.setattr(dlf, 'siou_loss', fake_siou, raising=False)
    monkeypatch.delattr(dlf, 'wiou_loss', raising=False)
    losses = sim.autograd_losses()
    assert losses['SIoU'] is fake_siou and 'WIoU' not in losses
    run = sim.simulate('autograd', names=['SIoU'], points=3, steps=2)
    assert list(run['losses']) == ['SIoU'] and len(calls) == 2


def test_cli_writes_table_json_and_pictures(tmp_path):
    out = str(tmp_path / 'sim')
    sim.main(['--points', '4', '--losses', 'IoU', 'DIoU', 'L1', '--out-dir', out])
    results = json.load(open(osp.join(out, 'results.json')))
    assert [r['mode'] for r in results] == ['authors', 'autograd']
    assert list(results[0]['losses']) == ['IoU', 'DIoU']
    assert list(results[1]['losses']) == ['IoU', 'DIoU', 'L1']
    md = open(osp.join(out, 'results.md')).read().split('\n\n')
    rows = [line for line in md[0].splitlines() if line.startswith('| ')]
    assert len(rows) == 1 + 5
    # side by side: IoU, DIoU in both modes, L1 in autograd only
    wide = [line for line in md[1].splitlines() if line.startswith('| ')]
    assert [w.split(' | ')[0] for w in wide[1:]] == ['| IoU', '| DIoU', '| L1']
    assert wide[3].startswith('| L1 | — | — | ')
    r = results[1]['losses']['DIoU']
    assert len(r['errors']) == 201
    assert math.isclose(r['total_error'], sum(r['errors'][1:]), rel_tol=1e-12)
    assert rows[4].startswith(f"| autograd (detloss) | DIoU | {r['total_error']:.4g} | "
                              f"{r['final_error']:.4g} |")
    points = json.load(open(osp.join(out, 'point_errors.json')))
    assert len(points['point_xy']) == 4
    assert math.isclose(sum(points['autograd']['DIoU']), r['final_error'], rel_tol=1e-9)
    for name in ('curves.png', 'maps_authors.png', 'maps_autograd.png'):
        assert osp.getsize(osp.join(out, name)) > 10000
    # --from-results redraws a previous run's table without simulating
    again = str(tmp_path / 'again')
    sim.main(['--from-results', out, '--out-dir', again, '--no-plots'])
    assert open(osp.join(again, 'results.md')).read() == open(osp.join(out, 'results.md')).read()


@pytest.mark.parametrize('name,loss_fn,flags', [
    ('IoU', partial(dlf.iou_loss, eps=0.0), dict(half=True)),
    ('GIoU', partial(dlf.giou_loss, eps=0.0), dict(half=True, clamp=True)),
    ('DIoU', partial(dlf.diou_loss, eps=0.0), dict(half=True, true_enclosing=True)),
    ('CIoU', partial(dlf.ciou_loss, eps=0.0), dict(half=True, true_enclosing=True,
                                                 true_dv=True)),
])
def test_authors_gradients_with_every_correction_are_the_true_ones(name, loss_fn, flags):
    # Each departure named in the transcription, corrected, gives autograd's gradient on
    # random boxes (overlapping and disjoint): the list of departures is complete.
    pred, target = _random_pairs(800, seed=8)
    s = _authors(name, pred, target, **flags)
    expected = _ascent(loss_fn, pred, target)
    torch.testing.assert_close(s, expected, atol=1e-6, rtol=1e-5)
    # and the uncorrected direction differs from it
    assert (_authors(name, pred, target) - expected).abs().max() > 1e-2


def test_cli_rejects_unknown_losses_and_too_few_points(tmp_path):
    with pytest.raises(SystemExit, match="unknown \\['Foo'\\]"):
        sim.main(['--points', '3', '--losses', 'Foo', '--out-dir', str(tmp_path)])
    with pytest.raises(SystemExit, match='none of'):
        sim.main(['--points', '3', '--mode', 'authors', '--losses', 'EIoU',
                  '--out-dir', str(tmp_path)])
    with pytest.raises(SystemExit):
        sim.parse_args(['--points', '2'])
