# Few-shot ImageNet classification as OpenFlamingo evaluates it: demos from
# train/, queries from val/ (ImageNet's folders, one directory per WordNet id,
# under data/imagenet), OpenFlamingo's prompt ("<image>Output:<name>"), all
# 1000 class names ranked by their mean log-likelihood per token (its rule),
# top-1 and top-5. data/imagenet/classnames.txt: a copy of
# mmflamingo/datasets/imagenet_classnames.txt, the names OpenFlamingo ranks.
# The Runner's test loop, as in ./coco_caption_fewshot.py.
imagenet_root = 'data/imagenet'
test_dataloader = dict(
    batch_size=8,
    num_workers=0,
    dataset=dict(
        type='ImageFolderClassification',
        data_root=imagenet_root,
        class_names_file='classnames.txt',
        split='val'),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='RankClassificationMetric', topk=(1, 5))
test_cfg = dict(
    type='FewShotTestLoop',
    task='classification',
    support=dict(
        type='ImageFolderClassification',
        data_root=imagenet_root,
        class_names_file='classnames.txt',
        split='train'),
    shots=[0, 4, 8, 16, 32],
    num_trials=3,
    seed=42,
    demo_selection='random',
    score_reduction='mean',
    # the prompt runs once per query; its 1000 names follow its KV cache,
    # this many per LM call
    candidate_batch_size=100)
