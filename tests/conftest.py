"""Shared fixtures and the layout of the tests.

``tests/unit/``: the functions and modules of the package (values, gradients, errors).
``tests/integration/``: real mmdet detectors, training runs, the tools, distributed runs,
kill-and-resume and the install; every test there carries the ``integration`` marker
(``pytest -m "not integration"`` runs the unit tests alone). Shared helpers live next to
this file: ``factories.py`` (random boxes and logits), ``device_utils.py``,
``integration_utils.py`` and ``_tools_helpers.py``.

``device`` is parametrised over the CPU and CUDA; the CUDA case is skipped where no GPU
is present and carries the ``cuda`` marker, so ``pytest -m cuda`` runs exactly the CUDA
cases (``tools/gpu_check.sh`` does). Tests take it as an argument and put their inputs
on it; :func:`device_utils.no_host_sync` checks that a forward + backward makes the host
wait for nothing.
"""
import pytest
import torch

_HAS_CUDA = torch.cuda.is_available()

DEVICE_PARAMS = [
    pytest.param('cpu', id='cpu'),
    pytest.param('cuda', id='cuda', marks=[
        pytest.mark.cuda,
        pytest.mark.skipif(not _HAS_CUDA, reason='no CUDA device here')]),
]


@pytest.fixture(params=DEVICE_PARAMS)
def device(request) -> torch.device:
    """Every device a computation test runs on (CUDA skipped without a GPU)."""
    return torch.device(request.param)


def pytest_collection_modifyitems(config, items):
    """Mark every test under ``tests/integration/`` as ``integration``."""
    for item in items:
        if 'integration' in item.path.parent.parts[-1:]:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _restore_deterministic_algorithms():
    """A Runner built in-process with ``randomness=dict(deterministic=True)`` turns on
    ``torch.use_deterministic_algorithms`` for the whole process (and with it NaN-filled
    ``torch.empty``): give every later test the setting it had before."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
