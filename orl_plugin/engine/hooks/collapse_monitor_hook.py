"""A training hook that watches for collapse: the effective rank of the projector output on a fixed batch."""
from __future__ import annotations

import math
import time
from typing import Any, List, Optional

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from orl_plugin.evaluation.view_retrieval import effective_rank
from orl_plugin.models.image_feature import ImageFeature


@HOOKS.register_module()
class CollapseMonitorHook(Hook):
    """Log the effective rank of the projector output on a fixed batch every ``interval``
    iterations as ``monitor/projector_rank``, and warn when it stays below ``min_rank`` for
    ``patience`` checks in a row (each check also logs one line).

    Self-supervised losses without negatives (BYOL, ORL's branches) can fall while the features
    fall into a few directions (dimensional collapse) or one point (complete collapse); the
    effective rank (:func:`~orl_plugin.evaluation.view_retrieval.effective_rank`: how many principal
    directions share the variance) shows it without labels: 1 is complete collapse, the projector's
    output size is the most. The batch is fixed: the first view of the first ``num_samples``
    training samples this rank sees (the first iterations' batches, kept on the CPU as the loader
    gave them; fewer if the first epoch has fewer), embedded with the model's own data preprocessor
    (no training-time augmentation), online backbone and projector in eval mode (BN running
    statistics; nothing of the training state changes), L2-normalised. The first check is as soon
    as the batch is complete, the next ones every ``interval`` iterations. Main process only (no
    collective ops). A model without projector turns the hook off with one warning.

    Args:
        interval: Check every ``interval`` iterations.
        num_samples: Size of the fixed batch.
        min_rank: Warn below this effective rank...
        patience: ...when ``patience`` checks in a row are below it (one warning per stretch,
            one line when it recovers).
        batch_size: Samples per forward.
    """

    priority = 'LOW'

    def __init__(self,
                 interval: int = 50,
                 num_samples: int = 128,
                 min_rank: float = 3.0,
                 patience: int = 3,
                 batch_size: int = 64) -> None:
        if interval < 1 or num_samples < 2 or patience < 1 or batch_size < 1:
            raise ValueError('CollapseMonitorHook: needs interval >= 1, num_samples >= 2, patience >= 1 and '
                             f'batch_size >= 1, got {interval}, {num_samples}, {patience}, {batch_size}')
        self.interval = interval
        self.num_samples = num_samples
        self.min_rank = min_rank
        self.patience = patience
        self.batch_size = batch_size
        self.feature = ImageFeature(feature='neck')
        self._views: List[torch.Tensor] = []
        self._frozen = False
        self._below: List[int] = []  # iterations of the current stretch below min_rank
        self._warned = False
        self.disabled_reason: Optional[str] = None
        self.history: List[tuple] = []  # (iteration, rank): what was logged
        self.dims = 0  # the projector's output size

    def _held(self) -> int:
        return sum(len(v) for v in self._views)

    def _collect(self, data_batch: Any) -> bool:
        """Keep the first view of the batch's samples until ``num_samples`` are held; whether this
        batch completed the fixed batch."""
        if not isinstance(data_batch, dict):
            return False
        have = self._held()
        inputs = data_batch.get('inputs')
        view = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        if isinstance(view, (list, tuple)):  # pseudo_collate: one tensor per sample
            view = torch.stack(list(view))
        if isinstance(view, torch.Tensor) and view.dim() == 4:
            self._views.append(view[:self.num_samples - have].detach().cpu().clone())
        return self._held() >= self.num_samples

    @torch.no_grad()
    def rank(self, model: torch.nn.Module) -> float:
        """The effective rank of the fixed batch's projector output (``model`` unwrapped)."""
        batch = torch.cat(self._views)
        was_training = model.training
        model.eval()
        try:
            feats = [
                self.feature(model, dict(inputs=batch[s:s + self.batch_size], data_samples=None))
                for s in range(0, len(batch), self.batch_size)
            ]
        finally:
            model.train(was_training)
        feats = torch.cat(feats).cpu()
        self.dims = feats.size(1)
        return effective_rank(feats)

    def after_train_iter(self,
                         runner: Any,
                         batch_idx: int,
                         data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        if not is_main_process() or self.disabled_reason is not None:
            return
        it = runner.iter + 1  # the loop counts the iteration after the hooks
        if not self._frozen:
            if self._collect(data_batch):
                self._check(runner, it)
        elif it % self.interval == 0:
            self._check(runner, it)

    def after_train_epoch(self, runner: Any) -> None:
        """A first epoch shorter than the fixed batch: the batch is what it gave."""
        if is_main_process() and self.disabled_reason is None and not self._frozen:
            self._check(runner, runner.iter)

    def _check(self, runner: Any, it: int) -> None:
        self._frozen = True
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if self._held() < 2:
            self.disabled_reason = 'the training batches hold fewer than 2 image tensors (B, 3, H, W)'
        else:
            try:
                self.feature.check(model)
            except AttributeError as e:
                self.disabled_reason = str(e)
        if self.disabled_reason is not None:
            runner.logger.warning(f'collapse monitor turned off: {self.disabled_reason}')
            return
        t0 = time.perf_counter()
        value = self.rank(model)
        self.history.append((it, value))
        runner.visualizer.add_scalars({'monitor/projector_rank': value}, step=it)
        runner.logger.info(f'collapse monitor: projector output effective rank {value:.2f} of {self.dims} dims '
                           f'(iteration {it}, {self._held()} fixed samples; {time.perf_counter() - t0:.1f} s)')
        self._judge(runner, it, value)

    def _judge(self, runner: Any, it: int, value: float) -> None:
        low = math.isnan(value) or value < self.min_rank
        if not low:
            if self._warned:
                runner.logger.info(f'collapse monitor: the projector output\'s effective rank is back above '
                                   f'{self.min_rank:g} ({value:.2f} at iteration {it})')
            self._below, self._warned = [], False
            return
        self._below.append(it)
        if len(self._below) >= self.patience and not self._warned:
            self._warned = True
            what = 'NaN or infinite' if math.isnan(value) else 'collapsing into a few directions'
            runner.logger.warning(
                f'collapse monitor: the projector output\'s effective rank has been below {self.min_rank:g} for '
                f'{len(self._below)} checks (iterations {self._below[0]}-{it}; now {value:.2f} on '
                f'{self._held()} fixed samples): the features are {what}')
