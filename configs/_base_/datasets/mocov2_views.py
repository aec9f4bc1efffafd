# The views of MoCo v2 (Chen et al., 2020; mmpretrain::_base_/datasets/imagenet_bs32_mocov2.py):
# both views from one pipeline: RandomResizedCrop 224 (area 0.2-1), colour jitter
# (0.4, 0.4, 0.4, 0.1) p=0.8, grayscale p=0.2, Gaussian blur sigma U(0.1, 2.0) p=0.5, flip 0.5.
# Pillow bilinear resizes, as every stage of this project (mmpretrain's default interpolation).
view_pipeline = [
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.), interpolation='bilinear', backend='pillow'),
    dict(
        type='RandomApply',
        transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)],
        prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.5),
    dict(type='RandomFlip', prob=0.5),
]
