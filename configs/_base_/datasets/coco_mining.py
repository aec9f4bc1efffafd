# What the ORL stage-2 steps share: one ordered pass over the COCO train2017 image list
# (./scene_lists.py), each image once, on any number of ranks (`tools/test.py`,
# `tools/dist_test.sh`); the step's loop (test_cfg) drives it and its evaluator writes the output.
_base_ = './scene_lists.py'

test_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='SceneImageDataset', **_base_.coco_train2017, test_mode=True))
