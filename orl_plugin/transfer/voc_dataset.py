"""Pascal VOC that trains on the objects marked 'difficult', as detectron2 does."""
from xml.etree import ElementTree as ET

from mmdet.datasets import VOCDataset
from mmdet.registry import DATASETS


@DATASETS.register_module()
class KeepDifficultVOCDataset(VOCDataset):
    """``VOCDataset`` whose training split keeps the 'difficult' objects as ordinary boxes.

    mmdet gives them ``ignore_flag=1``, which drops them from training; detectron2's Pascal VOC
    loader (used by the ORL / MoCo detection protocol) trains on them. In ``test_mode`` they stay
    ignored, as the VOC evaluation wants. Boxes ignored for ``bbox_min_size`` stay ignored.
    """

    def _parse_instance_info(self, raw_ann_info: ET.ElementTree, minus_one: bool = True) -> list:
        if not self.test_mode:
            # the tree is parsed afresh for each image: clearing the flags here changes nothing else
            for flag in raw_ann_info.iter('difficult'):
                flag.text = '0'
        return super()._parse_instance_info(raw_ann_info, minus_one=minus_one)
