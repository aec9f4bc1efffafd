"""A training hook that stops the run at the first NaN or infinite loss, before anything saves it."""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Optional

import torch
from mmengine.dist import all_gather_object, all_reduce, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop
from mmpretrain.registry import HOOKS


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite: the training stopped (the command line prints one line)."""


def nonfinite_terms(outputs: Optional[Dict[str, Any]]) -> List[str]:
    """The loss terms of a train step's outputs (mmengine's ``log_vars``: the summed ``loss`` first,
    then each term) that are NaN or infinite, as ``'name=value'``; the total only when no term is."""
    bad = []
    for name, value in (outputs or {}).items():
        if 'loss' not in name:
            continue
        v = float(value.detach().float().mean()) if isinstance(value, torch.Tensor) else float(value)
        if not math.isfinite(v):
            bad.append((name, v))
    terms = [(n, v) for n, v in bad if n != 'loss']
    return [f'{n}={v}' for n, v in (terms or bad)]


@HOOKS.register_module()
class NaNGuardHook(Hook):
    """Stop training at the first iteration whose loss is NaN or infinite, with one line that names
    the iteration and the loss term, and keep the last good checkpoint.

    The check runs right after each train step (priority ``VERY_HIGH``: before the logger and the
    checkpoint hook, which would otherwise log and save the broken state; the optimiser has
    already applied that step, so the weights in memory are lost, and nothing after the last saved
    checkpoint is written). Every rank checks its own losses and one all-reduce of a flag per
    iteration tells all ranks to stop at the same iteration (one rank's NaN reaches every rank's
    weights through the averaged gradients, and a rank that stopped alone would leave the others
    waiting). It raises :class:`NonFiniteLossError`, which the tools' error policy
    (``orl_plugin.utils.error_policy``) prints as one line with exit status 2.
    """

    priority = 'VERY_HIGH'

    def after_train_iter(self,
                         runner: Any,
                         batch_idx: int,
                         data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        bad = nonfinite_terms(outputs)
        if get_world_size() > 1:
            flag = torch.tensor([float(bool(bad))], device=self._device(outputs))
            all_reduce(flag)
            if not float(flag):
                return
            where = [f'rank {r}: {", ".join(b)}' for r, b in enumerate(all_gather_object(bad)) if b]
            terms = '; '.join(where)
        elif not bad:
            return
        else:
            terms = ', '.join(bad)
        last = runner.message_hub.get_info('last_ckpt')
        kept = f'the last checkpoint is {last}' if last else 'no checkpoint had been saved'
        epoch = f'epoch {runner.epoch + 1}, batch {batch_idx + 1}, ' if isinstance(runner.train_loop,
                                                                                   EpochBasedTrainLoop) else ''
        message = (f'the loss became NaN or infinite at iteration {runner.iter + 1} ({epoch}{terms}); training '
                   f'stopped before saving anything of that step ({kept})')
        if get_rank() == 0:  # the log file says why the run ended; the console gets the error's one line
            record = runner.logger.makeRecord(runner.logger.name, logging.ERROR, __file__, 0, message, None, None)
            for handler in runner.logger.handlers:
                if isinstance(handler, logging.FileHandler):
                    handler.handle(record)
        raise NonFiniteLossError(message)

    @staticmethod
    def _device(outputs: Optional[dict]) -> torch.device:
        for value in (outputs or {}).values():
            if isinstance(value, torch.Tensor):
                return value.device
        return torch.device('cpu')
