"""``SelectiveSearchProposer``: the parameter-free "model" of the selective-search step."""
from typing import Any, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.model import BaseModel
from mmpretrain.registry import MODELS, TRANSFORMS


@MODELS.register_module()
class SelectiveSearchProposer(BaseModel):
    """OpenCV selective search as a model: images in, raw ``[x, y, w, h]`` boxes out.

    Stage 2b has no network, but mmengine's ``Runner`` needs a model. This is the real one:
    ``propose(imgs)`` (and ``forward(..., mode='tensor'|'predict')``) runs selective search on
    full-resolution BGR ``uint8`` images (``HxWx3`` arrays or tensors) in this process.
    ``SelectiveSearchLoop`` uses it only when the pipeline has not computed ``proposals`` in the
    data-loader workers (the fast path, via the ``SelectiveSearch`` transform).
    It has no parameters: in distributed runs use
    ``model_wrapper_cfg=dict(type='MMSeparateDistributedDataParallel')``, which leaves
    parameter-free modules unwrapped (plain DDP refuses a module without parameters).
    """

    def __init__(self,
                 mode: str = 'fast',
                 max_size: Optional[int] = None,
                 seed: Optional[int] = 1,
                 data_preprocessor: Optional[dict] = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        # the data pipeline's SelectiveSearch transform, through the registry (models sit above
        # the data sets and do not import them)
        self._ss = TRANSFORMS.build(
            dict(type='SelectiveSearch', mode=mode, max_size=max_size, num_threads=1, keep_img=False, seed=seed))

    def propose(self, imgs: Sequence[Union[np.ndarray, torch.Tensor]]) -> List[np.ndarray]:
        """Boxes ``(B_i, 4)`` int32 xywh for each ``HxWx3`` BGR image."""
        out = []
        for img in imgs:
            if isinstance(img, torch.Tensor):
                img = img.cpu().numpy()
            out.append(self._ss.transform(dict(img=np.asarray(img)))['proposals'])
        return out

    def forward(self, inputs: Sequence[Any], data_samples: Any = None, mode: str = 'tensor') -> List[np.ndarray]:
        if mode not in ('tensor', 'predict'):
            raise ValueError(f"SelectiveSearchProposer has no {mode!r} mode (nothing to train)")
        return self.propose(inputs)

    def extra_repr(self) -> str:
        return f'mode={self._ss.mode!r}, max_size={self._ss.max_size}, seed={self._ss.seed}'
