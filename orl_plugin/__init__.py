"""orl_plugin: ORL (NeurIPS 2021) as an OpenMMLab 2.0 plugin.

Importing the package registers every component into the mmpretrain registries (and the
transfer-only pieces into mmdet's), so configs only need
``custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)``.
"""
__version__ = '0.1.0'

from . import compat  # noqa: F401,E402  (stack fixes first: they patch mmengine at import)
from . import datasets  # noqa: F401,E402
from . import engine  # noqa: F401,E402
from . import evaluation  # noqa: F401,E402
from . import models  # noqa: F401,E402
from . import visualization  # noqa: F401,E402
