# Stage 4 of the shapes recipe: few-shot captioning of held-out scenes
# (Karpathy 'test' split), demos from 'train', CIDEr.
#   python tools/test.py \
#       configs/shapes/flamingo-tiny_shapes_fewshot-caption.py \
#       work_dirs/shapes/flamingo/flamingo-tiny_shapes.pth
# RICES demos: `--cfg-options test_cfg.demo_selection=rices` after
# caching features with tools/cache_rices_features.py (the recipe does).
_base_ = [
    './flamingo-tiny_shapes_mixture.py', '../_base_/datasets/shapes_fewshot.py'
]
# the test loop encodes each medium once itself: no token cache (training's)
model = dict(
    task='caption',
    backbone=dict(cache_size=0),
    generation_cfg=dict(num_beams=1, max_new_tokens=32))
captions = dict(
    type='KarpathyCaptionDataset',
    data_root={{_base_.shapes_root}},
    ann_file='captions/karpathy_shapes.json',
    data_prefix=dict(img_path='images'))
rices_dataset = dict(**captions, split='train')
rices_query_dataset = dict(**captions, split='test')
test_dataloader = dict(
    batch_size=48,
    num_workers=0,
    dataset=rices_query_dataset,
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='CaptionMetric', metrics=['CIDEr'])
test_cfg = dict(
    type='FewShotTestLoop',
    task='caption',
    support=rices_dataset,
    shots=[0, 4, 8],
    num_trials=3,
    seed=0,
    demo_selection='random',
    rices_support_features='work_dirs/shapes/rices/caption_support.pth',
    rices_query_features='work_dirs/shapes/rices/caption_query.pth',
    prompt={{_base_.caption_prompt}})
