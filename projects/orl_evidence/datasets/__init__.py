"""The project's data sets; importing this package registers them (mmpretrain's ``DATASETS``)."""
from .object_crops import ObjectCropDataset, context_box

__all__ = ['ObjectCropDataset', 'context_box']
