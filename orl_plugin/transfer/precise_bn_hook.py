"""PreciseBN for mmdet detectors, as detectron2's ``TEST.PRECISE_BN`` (the paper's protocol)."""
import copy
import itertools
from typing import Iterable, Iterator, Optional

import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop, Runner
from mmpretrain.engine.hooks.precise_bn_hook import scaled_all_reduce
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def precise_bn_stats(detector: torch.nn.Module, batches: Iterable, num_iters: int) -> int:
    """Replace the running statistics of ``detector``'s training-mode BN layers by their average
    over the next ``num_iters`` training batches of ``batches`` (the mean of the per-batch means and
    variances, averaged over ranks), with the training forward (``mode='loss'``: RPN and RoI head
    layers see the sampled training RoIs, as detectron2's PreciseBN hook runs the model).

    Returns the number of BN layers updated.
    """
    bns = [m for m in detector.modules() if m.training and isinstance(m, _BatchNorm)]
    if not bns:
        return 0
    momenta = [bn.momentum for bn in bns]
    means = [torch.zeros_like(bn.running_mean) for bn in bns]
    variances = [torch.zeros_like(bn.running_var) for bn in bns]
    for bn in bns:
        bn.momentum = 1.0  # running stats = this batch's stats
    done = 0
    for data in itertools.islice(batches, num_iters):
        detector(**detector.data_preprocessor(data, True), mode='loss')
        for i, bn in enumerate(bns):
            means[i] += bn.running_mean
            variances[i] += bn.running_var
        done += 1
    if done == 0:
        raise RuntimeError('PreciseBN: no training batch to compute the statistics with')
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    means = scaled_all_reduce([m / done for m in means], world_size)
    variances = scaled_all_reduce([v / done for v in variances], world_size)
    for bn, mean, var, momentum in zip(bns, means, variances, momenta):
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.momentum = momentum
    return len(bns)


def _endless(loader) -> Iterator:
    """The loader's batches, epoch after epoch (one iterator for the whole run: mmengine's
    InfiniteSampler can be iterated only once)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            return


@HOOKS.register_module()
class DetPreciseBNHook(Hook):
    """Recompute the BN statistics before each evaluation and after the last training step.

    detectron2's ``PreciseBN`` hook (``TEST.PRECISE_BN``, which the ORL / MoCo detection protocol
    enables): ``num_iters`` training batches per process, drawn from a new training data loader
    (the training one keeps its place), through the training forward. It runs after the
    iteration (or epoch) that the train loop evaluates after, and after the last one, before the
    checkpoint of that step is saved (priority ABOVE_NORMAL, as mmpretrain's ``PreciseBNHook``).

    mmpretrain's ``PreciseBNHook`` is not used as is: it needs ``loader.batch_size`` (None with
    mmdet's ``AspectRatioBatchSampler``) and runs the ``'tensor'`` forward, in which the RoI heads
    see test-time proposals instead of the sampled training RoIs.

    Args:
        num_iters (int): Batches per process (detectron2's ``TEST.PRECISE_BN.NUM_ITER``).
            Defaults to 200.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, num_iters: int = 200) -> None:
        if num_iters < 1:
            raise ValueError(f'DetPreciseBNHook: num_iters must be >= 1, got {num_iters}')
        self.num_iters = num_iters
        self._batches: Optional[Iterator] = None

    def _evaluates_after(self, runner: Runner, done: int) -> bool:
        """Whether the train loop evaluates after ``done`` iterations (epochs)."""
        loop = runner.train_loop
        return runner.val_loop is not None and done >= loop.val_begin \
            and done % loop.val_interval == 0

    def _run(self, runner: Runner) -> None:
        if self._batches is None:
            cfg = copy.deepcopy(runner.cfg.train_dataloader)
            cfg['persistent_workers'] = False  # the iterator below keeps its workers
            self._batches = _endless(Runner.build_dataloader(cfg, seed=runner.seed))
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        n = precise_bn_stats(model, self._batches, self.num_iters)
        if n:
            runner.logger.info(f'PreciseBN: statistics of {n} BN layers recomputed over '
                               f'{self.num_iters} training batches per process')
        else:
            runner.logger.warning('PreciseBN: the model has no BN layer in training mode')

    def after_train_iter(self,
                         runner: Runner,
                         batch_idx: int,
                         data_batch: Optional[dict] = None,
                         outputs: Optional[dict] = None) -> None:
        if isinstance(runner.train_loop, IterBasedTrainLoop) and (self.is_last_train_iter(runner)
                                                                  or self._evaluates_after(runner, runner.iter + 1)):
            self._run(runner)

    def after_train_epoch(self, runner: Runner) -> None:
        if isinstance(runner.train_loop, EpochBasedTrainLoop) and (self.is_last_train_epoch(runner)
                                                                   or self._evaluates_after(runner, runner.epoch + 1)):
            self._run(runner)
