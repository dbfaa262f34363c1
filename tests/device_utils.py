"""Helpers of the device-parametrised tests (``device`` fixture: conftest.py)."""
import contextlib

import torch

# operators that make the host wait for the device on a GPU (seen on the CPU too):
# .item() / bool(t) / int(t), data-dependent shapes, whole-tensor comparisons
SYNC_OPS = frozenset({'aten::_local_scalar_dense', 'aten::item', 'aten::is_nonzero',
                      'aten::nonzero', 'aten::equal'})


@contextlib.contextmanager
def no_host_sync(device: torch.device):
    """Fail if the block synchronises the host with the device.

    CUDA: ``torch.cuda.set_sync_debug_mode('error')`` (any synchronising CUDA call
    raises: ``.item()``, ``nonzero``, a blocking copy between host and device, ...).
    CPU: the operators of :data:`SYNC_OPS` are counted with ``torch.profiler`` (the CPU
    never waits, but these operators would on a GPU; a host-to-device copy is not
    visible this way).
    """
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode('error')
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(previous)
        return
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        yield
    found = sorted({e.name for e in prof.events() if e.name in SYNC_OPS})
    assert not found, f'host synchronisations: {found}'


def cuda_is(device) -> bool:
    return torch.device(device).type == 'cuda'
