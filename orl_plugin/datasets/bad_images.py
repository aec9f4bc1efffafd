"""Counting the unreadable images a training data set meets, across its data-loader workers."""
import logging
import math
from typing import Callable, Optional

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.logging import print_log

from .transforms.loading import BadImageError

# One byte per image: 0 not read yet, 1 read fine, >= 2 bad (the kind of failure).
_UNSEEN, _OK = 0, 1
_KINDS = ('unreadable', 'empty', 'undecodable', 'truncated', 'zero-size')
_CODE = {k: 2 + i for i, k in enumerate(_KINDS)}
#: How many bad files an error message names (the log names every one once).
MAX_NAMED = 20


class TooManyBadImagesError(RuntimeError):
    """More than the allowed share of a training set's images cannot be read."""


class BadImageTally:
    """Which images a data set has read and which were bad, shared by all its loader workers.

    The state is one byte per image in a torch tensor in shared memory, made when the data set is
    built in the main process: forked workers inherit the mapping and spawned ones receive it by
    handle, so every worker of a rank writes to the same array and each bad file is warned about
    once per rank (a second worker racing on the same file may warn once more). Ranks are separate
    processes and keep their own tallies, each judging the share of its own sampled images.

    The run stops (:class:`TooManyBadImagesError`, naming the files) when the bad images of this
    rank exceed ``max_bad_fraction`` of ``max(images read, images per rank and epoch)``. In the
    first epoch that is a lower bound of the true share (the images of the epoch are all read by
    its end), so a folder below the threshold never stops and a wrong folder stops after its first
    few samples; afterwards it is the share among the distinct images read.

    Args:
        owner: The data set's name, for the log lines.
        num_images: Size of the index space (``mark_*`` take indices in ``[0, num_images)``).
        max_bad_fraction: Allowed share of bad images, e.g. 0.01; ``None`` never stops.
        per_epoch: Images this rank reads per epoch (default: ``num_images`` split over ranks).
    """

    def __init__(self,
                 owner: str,
                 num_images: int,
                 max_bad_fraction: Optional[float] = 0.01,
                 per_epoch: Optional[int] = None) -> None:
        if max_bad_fraction is not None and not 0 <= max_bad_fraction <= 1:
            raise ValueError(f'{owner}: max_bad_fraction must be in [0, 1] or None, '
                             f'got {max_bad_fraction}')
        self.owner = owner
        self.max_bad_fraction = max_bad_fraction
        if per_epoch is None:
            _, world_size = get_dist_info()
            per_epoch = math.ceil(num_images / world_size)
        self.per_epoch = int(per_epoch)
        self.state = torch.zeros(max(num_images, 1), dtype=torch.uint8).share_memory_()
        self._view: Optional[np.ndarray] = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state['_view'] = None  # the numpy view is remade on the tensor that arrives
        return state

    @property
    def _arr(self) -> np.ndarray:
        if self._view is None:
            self._view = self.state.numpy()
        return self._view

    @property
    def num_bad(self) -> int:
        """Distinct bad images found so far (all workers of this rank)."""
        return int((self._arr >= 2).sum())

    @property
    def num_read(self) -> int:
        """Distinct images read so far, bad or not."""
        return int((self._arr != _UNSEEN).sum())

    def bad_indices(self) -> np.ndarray:
        return np.flatnonzero(self._arr >= 2)

    def kind(self, index: int) -> str:
        code = int(self._arr[index])
        return _KINDS[code - 2] if code >= 2 else ''

    def mark_ok(self, index: int) -> None:
        if self._arr[index] == _UNSEEN:
            self._arr[index] = _OK

    def mark_bad(self, index: int, error: BadImageError, path_of: Callable[[int], str]) -> None:
        """Record a bad image: warn the first time, raise when there are too many."""
        first = self._arr[index] < 2
        self._arr[index] = _CODE.get(getattr(error, 'kind', ''), _CODE['undecodable'])
        if not first:
            return
        num_bad, num_read = self.num_bad, self.num_read
        limit = 'no limit' if self.max_bad_fraction is None else \
            f'the run stops above {self.max_bad_fraction:.1%}'
        print_log(
            f'{self.owner}: skipped unreadable image {error.img_path} ({error.reason}); drawing '
            f'another sample. {num_bad} bad of {num_read} images read so far ({limit})',
            logger='current',
            level=logging.WARNING)
        if self.max_bad_fraction is not None and \
                num_bad > self.max_bad_fraction * max(num_read, self.per_epoch):
            raise TooManyBadImagesError(self.message(path_of))

    def message(self, path_of: Callable[[int], str]) -> str:
        bad = self.bad_indices()
        named = ', '.join(f'{path_of(int(i))} ({self.kind(int(i))})' for i in bad[:MAX_NAMED])
        more = f' and {len(bad) - MAX_NAMED} more (each named in a warning above)' \
            if len(bad) > MAX_NAMED else ''
        num_read = self.num_read
        return (f'{self.owner}: {len(bad)} of the {num_read} images read so far cannot be read '
                f'({len(bad) / max(num_read, 1):.1%}), more than max_bad_fraction='
                f'{self.max_bad_fraction} of max({num_read} read, {self.per_epoch} per epoch): '
                'is the data path right? Remove or fix them, train on the clean list that '
                'tools/analysis_tools/check_images.py writes, or raise max_bad_fraction. '
                f'Unreadable: {named}{more}')
