# ORL stage 3 data on COCO train2017: per sample, the query image's two views, an intra-RoI pair
# (a kept box and its jittered copy) and an inter-RoI pair (a mined box pair with a neighbour),
# from the stage-2 correspondence store of the same image list. The image views are stage 1's
# (./byol_views.py); an RoI patch is the box resized to 96x96 (RoICrop, PIL bilinear, no random
# crop), then the rest of the image view's pipeline.
_base_ = './coco_scenes.py'

patch_pipeline1 = [dict(type='RoICrop', size=96), *_base_.view_pipeline1[1:]]
patch_pipeline2 = [dict(type='RoICrop', size=96), *_base_.view_pipeline2[1:]]

dataset_type = 'ORLDataset'
train_pipeline = [
    dict(type='BoxJitter'),  # the intra box's partner
    dict(
        type='ORLViews',
        img_pipelines=[_base_.view_pipeline1, _base_.view_pipeline2],
        patch_pipelines=[patch_pipeline1, patch_pipeline2]),
    dict(
        type='PackInputs',
        meta_keys=('sample_idx', 'img_path', 'knn_img_path', 'knn_slot', 'intra_bbox', 'inter_bbox_pair')),
]
train_dataloader = dict(
    drop_last=True,
    dataset=dict(
        type=dataset_type,
        # a native store or an official ORL correspondence JSON ('.../*.json')
        correspondence_file='orl/correspondence.orlstore',
        # it decodes the query and neighbour images itself: as the other stages do
        imdecode_backend=_base_.image_loader.imdecode_backend,
        pipeline=train_pipeline))
