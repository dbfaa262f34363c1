"""Running mmengine's Runner without a GPU: gloo instead of NCCL, CPU DDP.

mmengine 0.10.7 starts distributed jobs through ``torch.cuda.set_device(local_rank)``
before ``init_process_group`` (a CPU build of torch has no ``_cuda_setDevice``), and it
wraps the model in ``MMDistributedDataParallel(device_ids=[LOCAL_RANK])``, which torch
refuses for a CPU module. :func:`setup_device_and_launcher` changes nothing when CUDA is
available. Without CUDA it

- sets ``env_cfg.dist_cfg.backend = 'gloo'``;
- for ``launcher != 'none'``, initialises the gloo process group itself from the
  launcher's environment (torchrun's ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/
  ``MASTER_PORT``; Slurm's ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_NODELIST``;
  Open MPI's ``OMPI_COMM_WORLD_*``), so that the Runner finds it initialised and skips
  mmengine's CUDA-only path;
- sets ``model_wrapper_cfg`` to ``MMDistributedDataParallel`` with ``device_ids=None``
  (a wrapper the config names is kept; ``device_ids=None`` is set only for DDP types).
"""
import datetime
import os
import subprocess

import torch

__all__ = ['setup_device_and_launcher', 'shutdown_distributed']


def _env_from_launcher(launcher: str) -> None:
    env = os.environ
    if launcher == 'slurm':
        env['RANK'] = env['SLURM_PROCID']
        env['WORLD_SIZE'] = env['SLURM_NTASKS']
        env['LOCAL_RANK'] = env.get('SLURM_LOCALID', '0')
        if 'MASTER_ADDR' not in env:
            env['MASTER_ADDR'] = subprocess.getoutput(
                f"scontrol show hostname {env['SLURM_NODELIST']} | head -n1")
        env.setdefault('MASTER_PORT', '29500')
    elif launcher == 'mpi':
        env['RANK'] = env['OMPI_COMM_WORLD_RANK']
        env['WORLD_SIZE'] = env['OMPI_COMM_WORLD_SIZE']
        env['LOCAL_RANK'] = env.get('OMPI_COMM_WORLD_LOCAL_RANK', '0')
        env.setdefault('MASTER_ADDR', '127.0.0.1')
        env.setdefault('MASTER_PORT', '29500')
    elif launcher != 'pytorch':
        raise ValueError(
            f"launcher must be one of ('none', 'pytorch', 'slurm', 'mpi'), got {launcher!r}")


def setup_device_and_launcher(cfg, launcher: str) -> str:
    """Adapt ``cfg`` (an mmengine ``Config``) to the machine; returns ``'cuda'`` or
    ``'cpu'``. Call it before building the Runner."""
    if torch.cuda.is_available():
        return 'cuda'
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    if launcher == 'none':
        return 'cpu'
    import torch.distributed as dist
    if not dist.is_initialized():
        _env_from_launcher(launcher)
        kwargs = {}
        if dist_cfg.get('timeout') is not None:
            kwargs['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
        dist.init_process_group(backend='gloo', init_method='env://',
                                rank=int(os.environ['RANK']),
                                world_size=int(os.environ['WORLD_SIZE']), **kwargs)
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper = dict(wrapper)
    if wrapper.get('type', 'MMDistributedDataParallel') in (
            'MMDistributedDataParallel', 'DistributedDataParallel'):
        wrapper['device_ids'] = None  # a CPU module: DDP takes no device ids
    cfg.model_wrapper_cfg = wrapper
    return 'cpu'


def shutdown_distributed() -> None:
    """Wait for every rank, then destroy the default process group (if one runs).

    Called at the end of ``tools/train.py`` and ``tools/test.py``: left to interpreter
    shutdown, a gloo rank of a finished run can abort ("terminate called without an
    active exception") and torchrun then reports the whole run as failed."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
