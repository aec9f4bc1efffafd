"""Progress lines of a mining loop: images/s and ETA per rank."""
import time
from datetime import timedelta

from mmengine.dist import get_dist_info
from mmengine.logging import print_log

__all__ = ['Progress']


class Progress:
    """Images/s and ETA lines for this rank, at most every ``interval`` seconds."""

    def __init__(self, name: str, total: int, interval: float) -> None:
        self.name, self.total, self.interval = name, total, interval
        self.done = 0
        self.start = self.last = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = timedelta(seconds=int((self.total - self.done) / max(rate, 1e-9)))
            rank, _ = get_dist_info()
            print_log(f'[{self.name}] rank {rank}: {self.done}/{self.total} images, '
                      f'{rate:.2f} img/s, ETA {eta}',
                      logger='current')

    def finish(self) -> None:
        elapsed = time.monotonic() - self.start
        rank, _ = get_dist_info()
        print_log(
            f'[{self.name}] rank {rank}: computed {self.done} images in {elapsed:.1f} s '
            f'({self.done / max(elapsed, 1e-9):.2f} img/s)',
            logger='current')
