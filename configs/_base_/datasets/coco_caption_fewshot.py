# Few-shot COCO captioning as OpenFlamingo evaluates it: Karpathy splits
# (dataset_coco.json), demos from 'train' (+ 'restval'), queries from 'test',
# OpenFlamingo's prompt, CIDEr. Images as COCO ships them under data/coco
# (train2014/, val2014/ named by the Karpathy json's filepath).
# `tools/test.py` runs the Runner's test loop: the queries are
# test_dataloader's dataset (batch_size queries per model call), the metrics
# test_evaluator's, the few-shot settings test_cfg's (FewShotTestLoop; see
# mmflamingo/evaluation/fewshot_settings.py for all of them).
coco_root = 'data/coco'
test_dataloader = dict(
    batch_size=8,
    num_workers=0,
    dataset=dict(
        type='KarpathyCaptionDataset',
        data_root=coco_root,
        ann_file='dataset_coco.json',
        split='test',
        data_prefix=dict(img_path=coco_root)),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='CaptionMetric', metrics=['CIDEr'])
test_cfg = dict(
    type='FewShotTestLoop',
    task='caption',
    support=dict(
        type='KarpathyCaptionDataset',
        data_root=coco_root,
        ann_file='dataset_coco.json',
        split=['train', 'restval'],
        data_prefix=dict(img_path=coco_root)),
    shots=[0, 4, 8, 16, 32],
    num_trials=3,
    seed=42,
    demo_selection='random')
