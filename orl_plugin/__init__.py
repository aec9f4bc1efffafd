"""orl_plugin: ORL (NeurIPS 2021) as an OpenMMLab 2.0 plugin.

Importing the package registers every component into mmpretrain's registries and applies the stack
fixes of ``utils.stack_fixes``, so configs only need
``custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)``. The two pieces the
paper's transfer protocol adds to mmdet (PreciseBN, VOC with difficult boxes) live in
``orl_plugin.transfer``, which only the transfer configs import, so pre-training never imports mmdet.
"""
__version__ = '0.1.0'

from . import datasets  # noqa: F401,E402
from . import engine  # noqa: F401,E402
from . import evaluation  # noqa: F401,E402
from . import models  # noqa: F401,E402
from . import visualization  # noqa: F401,E402
from .utils import stack_fixes  # noqa: F401,E402  (first: they patch mmengine at import)
