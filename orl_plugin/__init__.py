"""orl_plugin: ORL (NeurIPS 2021) as an OpenMMLab 2.0 plugin.

Importing the package registers every component into mmpretrain's registries and applies the stack
fixes of ``compat``, so configs only need
``custom_imports = dict(imports=['orl_plugin'], allow_failed_imports=False)``. Nothing is registered
into mmdet's registries: the detection transfer configs build mmdet's own components.
"""
__version__ = '0.1.0'

from . import compat  # noqa: F401,E402  (stack fixes first: they patch mmengine at import)
from . import datasets  # noqa: F401,E402
from . import engine  # noqa: F401,E402
from . import evaluation  # noqa: F401,E402
from . import models  # noqa: F401,E402
from . import visualization  # noqa: F401,E402
