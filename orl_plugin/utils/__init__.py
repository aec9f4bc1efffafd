"""Helpers at the bottom of the package: they import nothing else of ``orl_plugin``.

``stack_fixes`` (fixes of mmengine/mmcv/torch breakages, applied on ``import orl_plugin``), ``error_policy``
(how the command-line tools report bad input), ``checkpoint`` (checkpoint layouts and safe loading),
``atomic`` (atomic file writes), ``mim_files`` (mim's view of the package) and ``pil_box_blur``.
"""
