# The views of ORL (paper; official stage-1 and stage-3 configs), defined once for stage 1 (the two
# image views) and stage 3 (the same image views, and RoI patches made from them in ./coco_orl.py):
# - image view: RandomResizedCrop 224 (area 0.08-1, PIL bilinear like the official torchvision
#   interpolation=2; mmpretrain's BYOL uses bicubic), flip 0.5, colour jitter (0.4, 0.4, 0.2, 0.1)
#   p=0.8, grayscale p=0.2, Gaussian blur sigma U(0.1, 2.0), solarize (threshold 128);
# - view 2 differs from view 1 as BYOL's: blur p=1.0 / 0.1, solarize p=0.0 / 0.2;
view_pipeline1 = [
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.08, 1.), interpolation='bilinear', backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomApply',
        transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)],
        prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=1.),
    dict(type='Solarize', thr=128, prob=0.),
]
view_pipeline2 = [*view_pipeline1[:4], dict(view_pipeline1[4], prob=0.1), dict(view_pipeline1[5], prob=0.2)]
