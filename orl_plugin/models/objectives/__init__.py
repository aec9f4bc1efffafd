"""Importing this package registers the stage-3 branch objectives."""
from .branch_encoders import BranchEncoders  # noqa: F401
from .byol_objective import BYOLObjective  # noqa: F401
from .contrastive_objective import ContrastiveObjective  # noqa: F401
