"""Multi-process runs on machines without an accelerator (``gloo``, ``--launcher pytorch`` or ``slurm``).

mmengine pins a CUDA device when it initialises the process group and wraps the model with
``device_ids=[LOCAL_RANK]``; both fail without a GPU. With no accelerator the group is initialised without a
device and DDP gets no ``device_ids`` for a CPU module. Machines with GPU, NPU, MLU or MUSA are untouched.
"""
import functools
import os
import subprocess
from typing import Optional

import mmengine.dist.utils as mmengine_dist_utils
import torch
from mmengine.device import is_mlu_available, is_musa_available, is_npu_available
from mmengine.model import MMDistributedDataParallel

from ._marker import is_patched, mark_patched

__all__ = ['patch_cpu_distributed']


def _has_accelerator() -> bool:
    return (torch.cuda.is_available() or is_npu_available() or is_mlu_available() or is_musa_available())


def patch_cpu_distributed() -> None:
    orig_init_dist = mmengine_dist_utils._init_dist_pytorch
    if not is_patched(orig_init_dist):

        @functools.wraps(orig_init_dist)
        def _init_dist_pytorch(backend: str, init_backend: str = 'torch', **kwargs) -> None:
            if _has_accelerator() or init_backend != 'torch':
                return orig_init_dist(backend, init_backend=init_backend, **kwargs)
            # No device to pin: torch.cuda.set_device would raise on this machine.
            torch.distributed.init_process_group(backend=backend, **kwargs)

        mark_patched(_init_dist_pytorch)
        # init_dist looks the function up in its module at call time.
        mmengine_dist_utils._init_dist_pytorch = _init_dist_pytorch

    orig_init_slurm = mmengine_dist_utils._init_dist_slurm
    if not is_patched(orig_init_slurm):

        @functools.wraps(orig_init_slurm)
        def _init_dist_slurm(backend: str, port: Optional[int] = None, init_backend: str = 'torch', **kwargs) -> None:
            if _has_accelerator() or init_backend != 'torch':
                return orig_init_slurm(backend, port=port, init_backend=init_backend, **kwargs)
            # mmengine's environment from srun's variables, without pinning a device.
            if 'MASTER_ADDR' not in os.environ:
                node_list = os.environ['SLURM_NODELIST']
                os.environ['MASTER_ADDR'] = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
            if port is not None:
                os.environ['MASTER_PORT'] = str(port)
            os.environ.setdefault('MASTER_PORT', '29500')
            os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
            os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
            os.environ['RANK'] = os.environ['SLURM_PROCID']
            torch.distributed.init_process_group(backend=backend, **kwargs)

        mark_patched(_init_dist_slurm)
        mmengine_dist_utils._init_dist_slurm = _init_dist_slurm

    orig_ddp_init = MMDistributedDataParallel.__init__
    if not is_patched(orig_ddp_init):

        @functools.wraps(orig_ddp_init)
        def __init__(self, module: torch.nn.Module, detect_anomalous_params: bool = False, **kwargs) -> None:
            params = list(module.parameters())
            if kwargs.get('device_ids') and params and \
                    all(p.device.type == 'cpu' for p in params):
                # torch's DDP accepts device_ids only for single-device GPU modules.
                kwargs['device_ids'] = None
                kwargs.pop('output_device', None)
            orig_ddp_init(self, module, detect_anomalous_params, **kwargs)

        mark_patched(__init__)
        MMDistributedDataParallel.__init__ = __init__
