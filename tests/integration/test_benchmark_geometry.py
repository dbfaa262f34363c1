"""The geometry benchmark suite runs on tiny inputs, its detloss and mmdet contenders
compute the same IoU / GIoU matrices, and NWD-NMS keeps some of the tiny boxes."""
import argparse
import importlib.util
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def test_geometry_suite():
    spec = importlib.util.spec_from_file_location('detloss_benchmark_tool_geometry',
                                                  REPO / 'tools' / 'benchmark.py')
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert 'geometry' in bench.available_suites()
    suite = bench.load_suite('geometry')
    threads = torch.get_num_threads()
    try:
        suite.run(argparse.Namespace(device='cpu', threads=[1], quick=True, only=None, rest=[]))
    finally:
        torch.set_num_threads(threads)
    calls = suite.extras(None)['calls']
    pairwise = {k.split(' | ')[2]: v['value'] for k, v in calls.items() if '10x1000' in k}
    assert len([k for k in pairwise if k.startswith('detloss')]) == 7
    if importlib.util.find_spec('mmdet') is not None:
        for mode in ('iou', 'giou'):
            assert pairwise[f'detloss pairwise {mode}'] == pytest.approx(
                pairwise[f'mmdet bbox_overlaps {mode}'], rel=1e-5)
    kept = {k.split(' | ')[2]: v['value'] for k, v in calls.items() if 'n=1000' in k}
    assert 0 < kept['detloss nwd_nms'] < 1000
