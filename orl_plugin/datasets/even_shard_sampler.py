"""``EvenShardSampler``: every rank the same number of images, and no image twice in an epoch."""
from __future__ import annotations

from typing import Optional, Sized

from mmengine.dataset import DefaultSampler
from mmpretrain.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class EvenShardSampler(DefaultSampler):
    """mmengine's ``DefaultSampler`` that cuts each epoch's order to a multiple of the world size
    instead of padding it with repeats.

    ``DefaultSampler(round_up=True)`` pads an epoch of ``N`` images to ``W * ceil(N / W)`` on ``W``
    ranks by repeating the first ones, so up to ``W - 1`` images are seen twice (and, with the
    loader's ``drop_last``, an epoch can have one step more than one rank with the whole batch
    has); ``round_up=False`` gives the ranks unequal numbers of images, and so possibly unequal
    numbers of steps, which stalls data-parallel training. Here every rank gets ``N // W`` images:
    rank ``r`` takes positions ``r, r + W, ...`` of the epoch's order (the same order as
    ``DefaultSampler``: shuffled with the seed and the epoch), and the last ``N % W`` positions
    are left out, different images every epoch when shuffled. With the loader's ``drop_last``
    and ``B`` images per rank, step ``k`` of the ``W`` ranks together takes positions
    ``k * W * B`` to ``(k + 1) * W * B - 1``: the batches of one rank with the batch ``W * B`` and
    the same seed, with the same partial last batch left out.

    Args:
        dataset: The data set.
        shuffle: Shuffle every epoch (with ``seed + epoch``). Defaults to True.
        seed: Shuffle seed, the same on every rank (``None``: one drawn on rank 0 and shared).
    """

    def __init__(self, dataset: Sized, shuffle: bool = True, seed: Optional[int] = None) -> None:
        super().__init__(dataset, shuffle=shuffle, seed=seed, round_up=False)
        # DefaultSampler.__iter__ takes positions rank, rank + W, ... below total_size
        self.num_samples = len(self.dataset) // self.world_size
        self.total_size = self.num_samples * self.world_size
