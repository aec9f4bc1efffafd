"""Two ranks with half the batch each train as one rank with the whole batch.

Stage-1 BYOL, stage-1 MoCo v2, stage-3 ORL and stage-3 ORL with the contrastive objective are built
from the CPU configs with one seed, wrapped as mmengine wraps a model on several ranks
(``MMDistributedDataParallel``, ``broadcast_buffers=False``) with the config's optimiser wrapper,
and trained for a few steps on fixed tensors (4 images of 32 px; ranks 0 and 1 get images 0-1 and
2-3) on the CPU with gloo. After every step rank 0's whole state (online parameters, the momentum
target, batch-norm statistics, MoCo's queue and pointer) must equal, within ``ATOL + RTOL * |x|``,
the state of one process that trained on all 4 images (no wrapper, as the runner trains on one GPU),
and rank 1's must equal rank 0's bit for bit. That checks, per step, that the gradients are averaged
once, the EMA target is updated once and MoCo's keys are gathered (in rank order) before they are
enqueued.

The runs are in float64: in float32 the two runs, which sum in different orders, differ by about
1e-4 (relative) in the first gradients already (batch statistics of 4 values on the 1x1 res5 map
are ill-conditioned), and the difference grows tens of times per step; in float64 it stays within
a tenth of the tolerance after two steps, while every broken mechanism exceeds it 1e4-fold or more.
The target momentum is raised (``TEST_MOMENTUM``) so that an extra EMA update shows within two
steps.

Batch norm: the GPU configs of BYOL and ORL use SyncBN, whose statistics are those of the whole
batch. torch's ``SyncBatchNorm`` runs on accelerators only, so on gloo the test swaps every BN
layer (online and target, same parameters and buffers) for ``_SumSyncBatchNorm`` below: the same
arithmetic with the sums all-reduced across ranks (and their gradients in the backward pass, as
SyncBN does). Each view of each ORL branch is its own forward, so this also checks that the
statistics are synchronised per branch and per view. MoCo v2's configs use per-GPU BN with
shuffled keys on purpose (its statistics differ from the whole batch's by design), so the MoCo v2
case puts BN in eval mode (fixed statistics): the forward no longer depends on how the batch is
split, and the gradients, the EMA and the queue are still checked exactly.

Every check is also run with its mechanism broken on purpose inside the workers (a gradient
averaged twice, the EMA updated once per rank, keys enqueued without gathering), and must fail.
"""
import copy
import json
import os.path as osp
import tempfile
from functools import lru_cache
from typing import Dict, List, Optional

import pytest
import torch
import torch.multiprocessing as mp
from helpers import ROOT

CONFIGS = {
    'byol': ('configs/byol/byol_resnet18_1xb32-coslr-30e_synthetic.py', None),
    'mocov2': ('configs/mocov2/mocov2_resnet18_1xb32-coslr-30e_synthetic.py', None),
    'orl': ('configs/orl/stage3/orl_resnet18_1xb16-coslr-30e_synthetic.py', None),
    # the stage-3 CPU config with the contrastive objective's model fragment
    'orl-mocov2': ('configs/orl/stage3/orl_resnet18_1xb16-coslr-30e_synthetic.py',
                   'configs/_base_/models/orl-mocov2_resnet18.py'),
}
# BN layers: whole-batch statistics on every rank (SyncBN), or fixed (eval mode; MoCo's shuffled BN)
SYNC_BN = {'byol': True, 'mocov2': False, 'orl': True, 'orl-mocov2': True}
# Each model's mechanisms, broken one at a time.
BREAKS = {
    'byol': ['grad_averaged_twice', 'ema_updated_per_rank'],
    'mocov2': ['keys_not_gathered', 'ema_updated_per_rank'],
    'orl': ['grad_averaged_twice', 'ema_updated_per_rank'],
    'orl-mocov2': ['keys_not_gathered'],  # its gradients and EMA take ORL's path, broken above
}
WORLD = 2
BATCH = 4  # whole batch; 2 per rank
SIZE = 32  # px, every view
STEPS = 2
# float64: the intact runs stay within a tenth of this after two steps, the broken ones 1e4 times beyond
ATOL, RTOL = 1e-8, 1e-6
# The target momentum, raised from the configs' 0.01 (BYOL, ORL) and 0.001 (MoCo) so that one extra
# EMA update moves the target by far more than the tolerance within two steps.
TEST_MOMENTUM = 0.5


# ----------------------------------------------------------------------------- whole-batch BN on gloo
class _SumAcrossRanks(torch.autograd.Function):
    """All-reduce (sum) whose backward all-reduces the gradient: the statistics of a batch split
    over ranks, differentiable as SyncBN's."""

    @staticmethod
    def forward(ctx, x, group):
        import torch.distributed as dist
        ctx.group = group
        x = x.clone()
        dist.all_reduce(x, group=group)
        return x

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist
        grad = grad.clone()
        dist.all_reduce(grad, group=ctx.group)
        return grad, None


class _SumSyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm with the statistics of the whole batch across ranks (SyncBN's arithmetic on
    gloo; test only). Takes over a BN layer's parameter and buffer objects, so that the EMA
    target, which holds references to them, keeps working."""

    def __init__(self, bn: torch.nn.modules.batchnorm._BatchNorm, group) -> None:
        super().__init__(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        assert bn.momentum is not None and bn.affine and bn.track_running_stats
        self.weight, self.bias = bn.weight, bn.bias
        self.running_mean, self.running_var = bn.running_mean, bn.running_var
        self.num_batches_tracked = bn.num_batches_tracked
        self.group = group
        self.train(bn.training)

    def _check_input_dim(self, x):
        pass

    def forward(self, x):
        import torch.nn.functional as F
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.full((1, ), x.numel() / x.size(1), dtype=x.dtype)
        sums = _SumAcrossRanks.apply(torch.cat([x.sum(dims), count]), self.group)  # one all-reduce for both
        n = float(sums[-1])
        mean = sums[:-1] / n
        centred = x - mean.view(shape)
        var = _SumAcrossRanks.apply((centred * centred).sum(dims), self.group) / n
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
            self.num_batches_tracked.add_(1)
        return centred / torch.sqrt(var.view(shape) + self.eps) * self.weight.view(shape) + self.bias.view(shape)


def _sync_batch_norm(module: torch.nn.Module, group) -> int:
    """Swap every BN layer of ``module`` (in place) for a whole-batch one; returns how many."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
            setattr(module, name, _SumSyncBatchNorm(child, group))
            count += 1
        else:
            count += _sync_batch_norm(child, group)
    return count


# ----------------------------------------------------------------------------- one training run
@lru_cache(maxsize=None)
def _configs(name: str) -> tuple:
    """The model config (target momentum raised to ``TEST_MOMENTUM``), the optimiser wrapper config
    and ``find_unused_parameters`` of ``name``'s CPU config (parsed once per process: seconds)."""
    from mmengine.config import Config
    config, fragment = CONFIGS[name]
    cfg = Config.fromfile(osp.join(ROOT, config))
    model_cfg = (Config.fromfile(osp.join(ROOT, fragment)).model if fragment else cfg.model).to_dict()
    model_cfg['momentum' if model_cfg['type'] == 'MoCo' else 'base_momentum'] = TEST_MOMENTUM
    if model_cfg['type'] == 'ORL':
        model_cfg['end_momentum'] = TEST_MOMENTUM
    return model_cfg, cfg.optim_wrapper.to_dict(), cfg.get('find_unused_parameters', False)


def _build(name: str):
    """The model in float64 (seed 0, initialised, train mode), its optimiser wrapper config and
    ``find_unused_parameters``."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import orl_plugin  # noqa: F401  (registers the components)
    model_cfg, optim_cfg, find_unused = _configs(name)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(copy.deepcopy(model_cfg))
    model.init_weights()
    model.train()
    model.double()
    preprocess = model.data_preprocessor.forward

    def in_float64(data, training=False):
        data = preprocess(data, training)
        return dict(data, inputs=[x.double() for x in data['inputs']])

    model.data_preprocessor.forward = in_float64
    return model, optim_cfg, find_unused


def _views(name: str) -> List[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    num_views = 6 if name.startswith('orl') else 2
    return [torch.randint(0, 256, (BATCH, 3, SIZE, SIZE), generator=g, dtype=torch.uint8) for _ in range(num_views)]


def _data(name: str, rank: int, world: int) -> dict:
    from mmpretrain.structures import DataSample
    per_rank = BATCH // world
    mine = slice(rank * per_rank, (rank + 1) * per_rank)
    return dict(inputs=[v[mine] for v in _views(name)], data_samples=[DataSample() for _ in range(per_rank)])


def _fixed_bn(model: torch.nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def _state(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _train(name: str, rank: int, world: int, group=None, broken: Optional[str] = None) -> List[Dict[str, torch.Tensor]]:
    """The state after each of ``STEPS`` steps of one rank's run (``world == 1``: no wrapper)."""
    from mmengine.logging import MessageHub
    from mmengine.model import MMDistributedDataParallel
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    MessageHub.get_current_instance().update_info('max_iters', 10)  # CosineEMA's schedule
    model, optim_cfg, find_unused = _build(name)
    if world > 1:
        if SYNC_BN[name]:
            assert _sync_batch_norm(model, group) > 0
        model = MMDistributedDataParallel(
            module=model, device_ids=None, broadcast_buffers=False, find_unused_parameters=find_unused)
        if broken == 'grad_averaged_twice':
            model.register_comm_hook(world, _average_twice)
    if not SYNC_BN[name]:
        _fixed_bn(model)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        optim_wrapper = build_optim_wrapper(model, optim_cfg)
    data = _data(name, rank, world)
    states = []
    for _ in range(STEPS):
        model.train_step(data, optim_wrapper)
        states.append(_state(model.module if world > 1 else model))
    return states


def _average_twice(world, bucket):
    """A DDP communication hook that divides the summed gradients by the world size twice."""
    import torch.distributed as dist
    buf = bucket.buffer().div_(world)
    fut = dist.all_reduce(buf, async_op=True).get_future()
    return fut.then(lambda f: f.value()[0].div_(world))


class _Broken:
    """Break one mechanism inside a worker, and put it back afterwards."""

    def __init__(self, what: Optional[str], world: int) -> None:
        self.what, self.world, self.undo = what, world, []

    def _patch(self, obj, attr, value):
        self.undo.append((obj, attr, getattr(obj, attr)))
        setattr(obj, attr, value)

    def __enter__(self):
        if self.what == 'ema_updated_per_rank':  # every rank's update lands on the target
            from mmengine.model.averaged_model import BaseAveragedModel
            update = BaseAveragedModel.update_parameters
            world = self.world

            def per_rank(avg, model):
                for _ in range(world):
                    update(avg, model)

            self._patch(BaseAveragedModel, 'update_parameters', per_rank)
        elif self.what == 'keys_not_gathered':  # each rank enqueues its own keys only
            import mmpretrain.models.selfsup.moco as moco

            import orl_plugin.models.objectives.contrastive_objective as contrastive
            for mod in (moco, contrastive):
                self._patch(mod, 'all_gather', lambda t, group=None: [t])
        return self

    def __exit__(self, *exc):
        for obj, attr, value in reversed(self.undo):
            setattr(obj, attr, value)


def _group_of(key: str) -> str:
    """What a state entry is, for the report."""
    if key.startswith(('target_net.', 'encoder_k.')):
        return 'target'
    if 'queue' in key:
        return 'queue'
    if key.endswith(('running_mean', 'running_var', 'num_batches_tracked')):
        return 'bn statistics'
    return 'online'


def _compare(got: Dict[str, torch.Tensor], ref: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Per group, the largest ``|got - ref| / (ATOL + RTOL * |ref|)`` (<= 1: within tolerance)."""
    assert got.keys() == ref.keys()
    worst: Dict[str, float] = {}
    for k, r in ref.items():
        g = got[k].double()
        r = r.double()
        ratio = float(((g - r).abs() / (ATOL + RTOL * r.abs())).max()) if r.numel() else 0.0
        group = _group_of(k)
        worst[group] = max(worst.get(group, 0.0), ratio)
    return worst


def _replicas_agree(state: Dict[str, torch.Tensor]) -> bool:
    """Whether every rank holds bit for bit the same state (checksums of each entry, gathered)."""
    import torch.distributed as dist
    sums = torch.stack([torch.stack([v.double().sum(), v.double().square().sum()]) for _, v in sorted(state.items())])
    gathered = [torch.empty_like(sums) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, sums)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def _worker(rank: int, name: str, init_file: str, out: str) -> None:
    import torch.distributed as dist
    torch.set_num_threads(1)
    # one process, the whole batch, before the process group exists (rank 1 waits for it)
    reference = _train(name, 0, 1) if rank == 0 else None
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=WORLD)
    try:
        bn_group = dist.new_group(list(range(WORLD)))  # BN's sums apart from DDP's gradient buckets
        results = {}
        for broken in [None] + BREAKS[name]:
            with _Broken(broken, WORLD):
                states = _train(name, rank, WORLD, bn_group, broken)
            agree = [_replicas_agree(s) for s in states]
            if rank == 0:
                results[broken or 'intact'] = dict(
                    vs_one_rank=[_compare(got, ref) for got, ref in zip(states, reference)], replicas_agree=agree)
        if rank == 0:
            with open(out, 'w') as f:
                json.dump(results, f)
    finally:
        dist.destroy_process_group()


@lru_cache(maxsize=None)
def _two_ranks(name: str) -> Dict[str, dict]:
    """Every variant of ``name`` trained on two ranks: per variant, the worst tolerance ratio of
    each group of rank 0's state against one rank's after each step, and whether the ranks' states
    agree bit for bit after each step. One spawn per model, shared by its test cases."""
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, 'result.json')
        mp.spawn(_worker, args=(name, osp.join(tmp, 'init'), out), nprocs=WORLD)
        with open(out) as f:
            return json.load(f)


CASES = [(name, broken) for name in CONFIGS for broken in [None] + BREAKS[name]]
# What each broken mechanism must throw off (among other groups its effect reaches).
SHOWS_IN = {'grad_averaged_twice': 'online', 'ema_updated_per_rank': 'target', 'keys_not_gathered': 'queue'}


@pytest.mark.parametrize('name,broken', CASES, ids=[f'{n}-{b or "intact"}' for n, b in CASES])
def test_two_ranks_train_as_one(name, broken):
    result = _two_ranks(name)[broken or 'intact']
    steps = result['vs_one_rank']
    assert len(steps) == STEPS
    table = '\n'.join(f'  step {i + 1}: ' + ', '.join(f'{g} {r:.3g}' for g, r in sorted(s.items()))
                      for i, s in enumerate(steps))
    if broken is None:
        assert all(r <= 1.0 for s in steps for r in s.values()), \
            f'{name}: 2 ranks drift from 1 rank (worst |diff| / tolerance per group of the state):\n{table}'
        assert all(result['replicas_agree']), f'{name}: the ranks\' states differ: {result["replicas_agree"]}'
    else:
        group = SHOWS_IN[broken]
        assert any(s[group] > 1.0 for s in steps), \
            f'{name}: {broken} went unnoticed (worst |diff| / tolerance per group of the state):\n{table}'


# The GPU configs beside each CPU config: their normalisation is what SYNC_BN stands in for.
GPU_CONFIGS = {
    'byol': 'configs/byol/byol_resnet50_8xb64-coslr-800e_coco.py',
    'mocov2': 'configs/mocov2/mocov2_resnet50_8xb32-coslr-800e_coco.py',
    'orl': 'configs/orl/stage3/orl_resnet50_8xb64-coslr-800e_coco.py',
    'orl-mocov2': 'configs/_base_/models/orl-mocov2_resnet50.py',
}


@pytest.mark.parametrize('name', list(GPU_CONFIGS))
def test_the_gpu_configs_normalise_as_the_test_assumes(name):
    """SyncBN in every BN layer of BYOL and ORL (whole-batch statistics: ``_SumSyncBatchNorm`` on
    gloo); per-GPU BN in MoCo v2 (its keys are shuffled across GPUs: eval-mode BN in the test)."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import orl_plugin  # noqa: F401
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(osp.join(ROOT, GPU_CONFIGS[name])).model)
    norms = {type(m) for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    synced = [issubclass(n, torch.nn.SyncBatchNorm) for n in norms]
    if SYNC_BN[name]:
        assert norms and all(synced), norms
    else:
        assert norms and not any(synced), norms
        assert type(model).__name__ == 'MoCo'  # batch_shuffle_ddp before the key encoder's BN
