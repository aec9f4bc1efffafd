"""The one rule for unreadable images, in every stage: how many a stage tolerates, and what it says when it stops.

A few damaged files (an interrupted copy, an empty file, a text file named ``.png``) never stop a stage: training
draws another sample, mining skips the image, and each file is named in the log. A stage stops when more than
``max_bad_fraction`` of its images cannot be read (:data:`DEFAULT_MAX_BAD_FRACTION`: more than half), which is a
wrong path or a broken folder, not a few damaged photos. It decides as early as it can and, before it stops,
looks at every image it has not read yet, so that the error names every unreadable file it can find.
"""
import logging
import math
import time
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.logging import print_log

from .transforms.loading import BadImageError, read_image

#: More than half of the images unreadable: a wrong path or a broken folder. Any share at or below it never
#: stops a stage (a folder of 30 photos with 3 broken files trains).
DEFAULT_MAX_BAD_FRACTION = 0.5
#: The chance, per check, that the early test stops a data set whose true share is within the limit.
FALSE_STOP = 1e-9
#: Seconds a stopping stage spends reading the images it has not met, to name every unreadable one.
SEARCH_SECONDS = 20.0
#: How many bad files the error line names; the log names up to LOG_NAMED.
MAX_NAMED = 20
LOG_NAMED = 1000

# One byte per image: 0 not read yet, 1 read fine, >= 2 bad (the kind of failure).
_UNSEEN, _OK = 0, 1
_KINDS = ('unreadable', 'empty', 'undecodable', 'truncated', 'zero-size')
_CODE = {k: 2 + i for i, k in enumerate(_KINDS)}


class TooManyBadImagesError(RuntimeError):
    """More than the allowed share of a data set's images cannot be read."""


def too_many_bad(num_bad: int,
                 num_read: int,
                 num_images: int,
                 max_bad_fraction: Optional[float],
                 sampled: bool = True) -> bool:
    """Whether ``num_bad`` unreadable images among ``num_read`` distinct ones read (of ``num_images``) show that
    more than ``max_bad_fraction`` of the images are unreadable.

    Certain: ``num_bad > max_bad_fraction * max(num_read, num_images)`` (they already are). Early, when the reads
    are a uniform random sample (``sampled``: training reads a shuffled epoch): the observed share exceeds the
    limit by more than Hoeffding's margin ``sqrt(ln(1 / FALSE_STOP) / (2 num_read))``, so a wrong path (every
    read fails) is caught after 42 reads instead of half an epoch. Mining reads in list order, where broken files
    may sit together: it uses the certain test only.
    """
    if max_bad_fraction is None or num_bad == 0:
        return False
    if num_bad > max_bad_fraction * max(num_read, num_images):
        return True
    if not sampled or num_read == 0:
        return False
    margin = math.sqrt(math.log(1 / FALSE_STOP) / (2 * num_read))
    return num_bad / num_read > max_bad_fraction + margin


def search_unreadable(paths: Iterable[Tuple[int, str]],
                      read: Callable[[str], object] = read_image,
                      seconds: float = SEARCH_SECONDS) -> Tuple[List[Tuple[int, BadImageError]], List[int], int]:
    """Read each ``(index, path)`` until ``seconds`` have passed: ``(bad, good, unchecked)``, where ``bad`` holds
    ``(index, error)``, ``good`` the readable indices and ``unchecked`` how many were left unread."""
    bad: List[Tuple[int, BadImageError]] = []
    good: List[int] = []
    items = list(paths)
    deadline = time.monotonic() + seconds
    for k, (index, path) in enumerate(items):
        if time.monotonic() > deadline:
            return bad, good, len(items) - k
        try:
            read(path)
        except BadImageError as e:
            bad.append((index, e))
        else:
            good.append(index)
    return bad, good, 0


def stop_message(owner: str, named: Sequence[str], num_checked: int, num_images: int, max_bad_fraction: Optional[float],
                 unchecked: int) -> str:
    """The one line a stage stops with: the share, the limit, what to do, and the unreadable files."""
    num_bad = len(named)
    listed = ', '.join(named[:MAX_NAMED])
    more = f' and {num_bad - MAX_NAMED} more (the log names them)' if num_bad > MAX_NAMED else ''
    scope = f'{num_bad} of its {num_images} images cannot be read'
    if unchecked:
        scope = (f'{num_bad} of the {num_checked} of its {num_images} images checked cannot be read '
                 f'({unchecked} left unread after {SEARCH_SECONDS:.0f} s)')
    return (f'{owner}: {scope} ({num_bad / max(num_checked, 1):.0%}), more than max_bad_fraction='
            f'{max_bad_fraction}: is the data path right? Fix or remove them, train on the readable ones '
            '(tools/analysis_tools/check_images.py DIR --out LIST writes their list; orl-pipeline --image-list '
            f'LIST), or raise max_bad_fraction. Unreadable: {listed}{more}')


def log_unreadable(owner: str, named: Sequence[str]) -> None:
    """Name the unreadable files in the log (up to LOG_NAMED), before a stage stops."""
    more = f'; and {len(named) - LOG_NAMED} more' if len(named) > LOG_NAMED else ''
    print_log(
        f'{owner}: {len(named)} unreadable images: {"; ".join(named[:LOG_NAMED])}{more}',
        logger='current',
        level=logging.ERROR)


class BadImageTally:
    """Which images a training data set has read and which were bad, shared by all its loader workers.

    The state is one byte per image in a torch tensor in shared memory, made when the data set is
    built in the main process: forked workers inherit the mapping and spawned ones receive it by
    handle, so every worker of a rank writes to the same array and each bad file is warned about
    once per rank (a second worker racing on the same file may warn once more). Ranks are separate
    processes and keep their own tallies, each judging its own sampled images.

    The rule (:func:`too_many_bad`, with ``per_epoch`` images per rank and epoch): when the bad images
    met so far show, or make likely, that more than ``max_bad_fraction`` of the images are bad, every
    image not yet read is read (for up to :data:`SEARCH_SECONDS`). If that reads them all, the
    decision is exact: the run goes on when the bad share of the whole data set is within the limit;
    otherwise it stops with :class:`TooManyBadImagesError`, naming every unreadable file found.

    Args:
        owner: The data set's name, for the log lines.
        num_images: Size of the index space (``mark_*`` take indices in ``[0, num_images)``).
        max_bad_fraction: Allowed share of bad images; ``None`` never stops.
        per_epoch: Images this rank reads per epoch (default: ``num_images`` split over ranks).
    """

    def __init__(self,
                 owner: str,
                 num_images: int,
                 max_bad_fraction: Optional[float] = DEFAULT_MAX_BAD_FRACTION,
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

    def _set_bad(self, index: int, error: BadImageError) -> None:
        self._arr[index] = _CODE.get(getattr(error, 'kind', ''), _CODE['undecodable'])

    def mark_bad(self,
                 index: int,
                 error: BadImageError,
                 path_of: Callable[[int], str],
                 read: Callable[[str], object] = read_image) -> None:
        """Record a bad image: warn the first time; check the rest and stop when there are too many.

        ``path_of`` maps an index to its file, ``read`` reads one (raising ``BadImageError``).
        """
        first = self._arr[index] < 2
        self._set_bad(index, error)
        if not first:
            return
        num_bad, num_read = self.num_bad, self.num_read
        limit = 'no limit' if self.max_bad_fraction is None else \
            f'the run stops if more than {self.max_bad_fraction:.0%} of the images are unreadable'
        print_log(
            f'{self.owner}: skipped unreadable image {error.img_path} ({error.reason}); drawing '
            f'another sample. {num_bad} bad of {num_read} images read so far ({limit})',
            logger='current',
            level=logging.WARNING)
        if too_many_bad(num_bad, num_read, self.per_epoch, self.max_bad_fraction):
            self.check_the_rest(path_of, read)

    def check_the_rest(self, path_of: Callable[[int], str], read: Callable[[str], object] = read_image) -> None:
        """Read every image not read yet (for up to :data:`SEARCH_SECONDS`) and stop, naming every bad file,
        unless the share of the whole data set turns out to be within the limit."""
        unseen = np.flatnonzero(self._arr == _UNSEEN)
        bad, good, unchecked = search_unreadable(((int(i), path_of(int(i))) for i in unseen), read)
        for i, e in bad:
            self._set_bad(i, e)
        self._arr[good] = _OK
        num_images = len(self._arr)
        if not unchecked and not too_many_bad(self.num_bad, num_images, num_images, self.max_bad_fraction):
            print_log(
                f'{self.owner}: read all {num_images} images: {self.num_bad} unreadable, within '
                f'max_bad_fraction={self.max_bad_fraction}; going on',
                logger='current',
                level=logging.WARNING)
            return
        named = [f'{path_of(int(i))} ({self.kind(int(i))})' for i in self.bad_indices()]
        log_unreadable(self.owner, named)
        raise TooManyBadImagesError(
            stop_message(self.owner, named, self.num_read, num_images, self.max_bad_fraction, unchecked))
