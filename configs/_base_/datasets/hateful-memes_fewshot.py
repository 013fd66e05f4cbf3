# Few-shot Hateful Memes as OpenFlamingo evaluates it: demos from train.jsonl,
# queries from dev_seen.jsonl (the challenge's files under
# data/hateful_memes, images in img/), OpenFlamingo's prompt ("<image>is an
# image with: '<text>' written on it. Is it hateful? Answer:"), 'no' and
# 'yes' ranked by their mean log-likelihood per token (its rule), ROC-AUC.
# The Runner's test loop, as in ./coco_caption_fewshot.py.
memes_root = 'data/hateful_memes'
test_dataloader = dict(
    batch_size=8,
    num_workers=0,
    dataset=dict(
        type='HatefulMemesDataset',
        ann_file=memes_root + '/dev_seen.jsonl',
        split='dev_seen',
        data_prefix=dict(img_path=memes_root + '/img')),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='ROCAUC')
test_cfg = dict(
    type='FewShotTestLoop',
    task='classification',
    support=dict(
        type='HatefulMemesDataset',
        ann_file=memes_root + '/train.jsonl',
        split='train',
        data_prefix=dict(img_path=memes_root + '/img')),
    shots=[0, 4, 8, 16, 32],
    num_trials=3,
    seed=42,
    demo_selection='random',
    score_reduction='mean')
