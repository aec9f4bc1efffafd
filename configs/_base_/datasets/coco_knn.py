# ORL stage 2a on COCO train2017: KNN image retrieval with the stage-1 model. Features: online
# backbone -> global average pool -> projector (256-d) -> L2 norm, on Resize 256 + CenterCrop 224
# (torchvision's on PIL images, as the official notebook); exact cosine top-10 other images (faiss
# IndexFlatIP, the query excluded by index).
# Output: data/coco/orl/knn.orlstore (set test_evaluator.json_file for the official JSON too).
_base_ = './coco_mining.py'

test_pipeline = [
    _base_.image_loader,
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow', interpolation='bilinear'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
# The image feature comes from the model's public interface (orl_plugin/models/image_feature.py):
# the projector output of a self-supervised model, the pooled backbone feature of a classifier.
test_cfg = dict(
    type='KNNMiningLoop', feature=dict(type='ImageFeature', feature='auto'), chunk_size=1024, log_interval=60)
test_evaluator = dict(
    type='KNNMetric',
    out_file=_base_.data_root + 'orl/knn.orlstore',
    json_file=None,  # e.g. data_root + 'orl/knn.json' for the official format
    k=10,
    use_gpu='auto')
