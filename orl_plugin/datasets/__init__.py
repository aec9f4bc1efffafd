"""Importing this package registers its components."""
from . import transforms  # noqa: F401
from .even_shard_sampler import EvenShardSampler  # noqa: F401
from .mining_dataset import ProposalDataset  # noqa: F401
from .orl_dataset import ORLDataset  # noqa: F401
from .scene_dataset import SceneImageDataset  # noqa: F401
