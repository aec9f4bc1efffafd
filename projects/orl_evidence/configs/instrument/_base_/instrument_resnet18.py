# MEASURING INSTRUMENT, NOT ORL. The model of the instrument
# (../instrument-gt-classifier_resnet18_1xb32-coslr-6e_synthetic-crops.py): a ResNet-18 classifier
# of the synthetic scenes' object categories, with the BYOL configs' normalisation. Also the model of
# the instrument's stage-2 configs (../instrument-{knn,correspondence}_resnet18_synthetic.py),
# which read its checkpoint as a stage-1 model.
# The head is an additive angular margin (ArcFace) head: it classifies the L2-normalised pooled feature, the
# feature that 2a and 2c compare by cosine similarity, so that similarity carries the category. With a linear
# head the crops are classified as well (95 %) but the pooled features' cosine mixes category with colour and
# size: on 400 v2 scenes the same-category share of mined object pairs was 0.81 (linear) against 0.89 (this
# head); README "The measuring instrument" has the variants measured.
num_classes = 8  # the synthetic scenes' categories (orl_plugin.datasets.synthetic_scenes.CATEGORIES)

model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(
        type='ClsDataPreprocessor',
        num_classes=num_classes,
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True),
    backbone=dict(type='ResNet', depth=18, out_indices=(3, ), norm_cfg=dict(type='BN')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='ArcFaceClsHead',
        num_classes=num_classes,
        in_channels=512,
        scale=16.,
        margins=0.2,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0)))
