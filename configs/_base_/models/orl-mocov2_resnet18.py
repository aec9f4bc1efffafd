# The contrastive stage-3 model of ./orl-mocov2_resnet50.py on the CPU configs' ResNet-18
# (./orl_resnet18.py: plain BN, mmpretrain's initialisation): projector 512 -> 512 -> 128
# (./mocov2_resnet18.py's), a queue of 4,096 keys per branch.
_base_ = './orl_resnet18.py'

model = dict(
    base_momentum=0.001,
    end_momentum=0.001,
    neck=dict(
        _delete_=True, type='MoCoV2Neck', in_channels=512, hid_channels=512, out_channels=128, with_avg_pool=True),
    head=dict(_delete_=True, type='ContrastiveObjective', feat_dim=128, queue_len=4096, temperature=0.2))
