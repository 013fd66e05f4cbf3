# Stage 4 of the shapes recipe: few-shot VQA on held-out scenes (the 'val'
# questions), demos from 'train' (answers in the benchmark's short style,
# which the training documents use only some of the time), the official VQA
# accuracy.
#   python tools/test.py configs/shapes/flamingo-tiny_shapes_fewshot-vqa.py \
#       work_dirs/shapes/flamingo/flamingo-tiny_shapes.pth
_base_ = [
    './flamingo-tiny_shapes_mixture.py', '../_base_/datasets/shapes_fewshot.py'
]
# the test loop encodes each medium once itself: no token cache (training's)
model = dict(
    task='vqa',
    backbone=dict(cache_size=0),
    generation_cfg=dict(num_beams=1, max_new_tokens=5))
vqa = dict(
    type='VQADataset',
    data_root={{_base_.shapes_root}},
    image_name='{image_id}.png',
    data_prefix=dict(img_path='images'))
rices_dataset = dict(
    **vqa,
    question_file='vqa/train_questions.json',
    annotation_file='vqa/train_annotations.json',
    split='train')
rices_query_dataset = dict(
    **vqa,
    question_file='vqa/val_questions.json',
    annotation_file='vqa/val_annotations.json',
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
    shots=[0, 4, 8],
    num_trials=3,
    seed=0,
    demo_selection='random',
    rices_support_features='work_dirs/shapes/rices/vqa_support.pth',
    rices_query_features='work_dirs/shapes/rices/vqa_query.pth',
    prompt={{_base_.qa_prompt}})
