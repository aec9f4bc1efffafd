"""``BranchEncoders``: what the ORL model lends a branch objective to encode its two views."""
from typing import Callable, NamedTuple

import torch


class BranchEncoders(NamedTuple):
    """The two encoders of ORL's stage 3, as callables ``(N, C, H, W) -> (N, D)``.

    ``online`` is backbone + projector with gradients; ``target`` is their momentum copy (BYOL's
    EMA target, MoCo's key encoder) under ``no_grad``. The model updates the target once per
    iteration before any branch runs; an objective only calls these, so it decides which views
    it encodes with which network (each call is one forward pass, so batch-norm statistics stay
    per branch and per view).
    """
    online: Callable[[torch.Tensor], torch.Tensor]
    target: Callable[[torch.Tensor], torch.Tensor]
