# Stage 4 of the shapes recipe: few-shot video question answering. Which way
# does the shape move? The val clips show (shape, colour, direction)
# combinations no training clip shows; demos are training clips. Every clip
# goes through the video path of training: 4 frames decoded by
# LoadVideoFrames, the Perceiver's temporal embeddings.
#   python tools/test.py \
#       configs/shapes/flamingo-tiny_shapes_fewshot-video.py \
#       work_dirs/shapes/flamingo/flamingo-tiny_shapes.pth
_base_ = [
    './flamingo-tiny_shapes_mixture.py', '../_base_/datasets/shapes_fewshot.py'
]
# the test loop encodes each medium once itself: no token cache (training's)
model = dict(
    task='vqa',
    backbone=dict(cache_size=0),
    generation_cfg=dict(num_beams=1, max_new_tokens=5))
videoqa = dict(
    type='VQADataset',
    data_root={{_base_.shapes_root}},
    image_name='{image_id}.mp4',
    data_prefix=dict(img_path='videos'))
rices_dataset = dict(
    **videoqa,
    question_file='videoqa/train_questions.json',
    annotation_file='videoqa/train_annotations.json',
    split='train')
rices_query_dataset = dict(
    **videoqa,
    question_file='videoqa/val_questions.json',
    annotation_file='videoqa/val_annotations.json',
    split='val')
test_dataloader = dict(
    batch_size=48,
    num_workers=0,
    dataset=rices_query_dataset,
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='VQAAccuracy')
test_cfg = dict(
    type='FewShotTestLoop',
    task='vqa',
    support=rices_dataset,
    shots=[0, 4],
    num_trials=3,
    seed=0,
    demo_selection='random',
    rices_support_features='work_dirs/shapes/rices/video_support.pth',
    rices_query_features='work_dirs/shapes/rices/video_query.pth',
    prompt={{_base_.qa_prompt}},
    media_pipeline={{_base_.video_pipeline}})
