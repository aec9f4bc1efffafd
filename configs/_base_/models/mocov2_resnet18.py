# MoCo v2 with a ResNet-18 for the CPU configs: the model of ./mocov2_resnet50.py at a smaller width
# (projector 512 -> 512 -> 128) and a queue of 4,096 keys (128 batches of 32; why: configs/mocov2/README.md).
_base_ = './mocov2_resnet50.py'

model = dict(queue_len=4096, backbone=dict(depth=18), neck=dict(in_channels=512, hid_channels=512))
