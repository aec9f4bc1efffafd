"""Batches that skip bad images: a data-loader worker returns a marker instead of failing the run."""
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from torch.utils.data import Dataset

from orl_plugin.datasets.transforms.loading import BadImageError

__all__ = ['SkippedSample', 'SkipBadImages', 'collate_skipping']


@dataclass
class SkippedSample:
    """What a data-loader worker returns instead of a sample whose image is bad."""

    reason: str


class SkipBadImages(Dataset):
    """Dataset view that turns ``BadImageError`` into a ``SkippedSample`` marker."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> Any:
        try:
            return self.dataset[idx]
        except BadImageError as e:
            return SkippedSample(reason=str(e))


def collate_skipping(batch: Sequence[Any], collate_fn: Callable) -> dict:
    """Collate the readable samples of a batch; report the positions of skipped ones."""
    valid = [i for i, b in enumerate(batch) if not isinstance(b, SkippedSample)]
    skipped = {i: b.reason for i, b in enumerate(batch) if isinstance(b, SkippedSample)}
    # gt_masks (ragged, for the metric: INFO_KEYS) would not collate
    samples = [{k: v for k, v in batch[i].items() if k != 'gt_masks'} if isinstance(batch[i], dict) else batch[i]
               for i in valid]
    data = collate_fn(samples) if valid else None
    return dict(data=data, valid=valid, skipped=skipped)
