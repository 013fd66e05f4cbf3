# Stage 4 of the shapes recipe: the in-context binding task. In each episode
# the shapes have invented names that only the episode's own demos reveal
# (demo_group_key='episode'); the query asks what a shape is called and the
# episode's names are ranked by their log-likelihood after the prompt (the
# VQA multiple-choice format), each scored as ' name', the way the world
# writes an answer. Chance is 1 / the names per episode.
#   python tools/test.py \
#       configs/shapes/flamingo-tiny_shapes_fewshot-binding.py \
#       work_dirs/shapes/flamingo/flamingo-tiny_shapes.pth
_base_ = [
    './flamingo-tiny_shapes_mixture.py', '../_base_/datasets/shapes_fewshot.py'
]
# the test loop encodes each medium once itself: no token cache (training's)
model = dict(task='vqa', backbone=dict(cache_size=0))
vqa = dict(
    type='VQADataset',
    data_root={{_base_.shapes_root}},
    image_name='{image_id}.png',
    data_prefix=dict(img_path='images'))
rices_dataset = dict(
    **vqa,
    question_file='binding/train_questions.json',
    annotation_file='binding/train_annotations.json',
    split='train')
rices_query_dataset = dict(
    **vqa,
    question_file='binding/val_questions.json',
    annotation_file='binding/val_annotations.json',
    split='val')
test_dataloader = dict(
    batch_size=48,
    num_workers=0,
    dataset=rices_query_dataset,
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='RankClassificationMetric', topk=1)
test_cfg = dict(
    type='FewShotTestLoop',
    task='classification',
    support=rices_dataset,
    shots=[0, 4, 8],
    num_trials=3,
    seed=0,
    demo_selection='random',
    demo_group_key='episode',
    rices_support_features='work_dirs/shapes/rices/binding_support.pth',
    rices_query_features='work_dirs/shapes/rices/binding_query.pth',
    prompt={{_base_.qa_prompt}},
    candidate_prefix=' ')
