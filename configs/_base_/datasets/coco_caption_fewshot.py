# Few-shot COCO captioning as OpenFlamingo evaluates it: Karpathy splits
# (dataset_coco.json), demos from 'train' (+ 'restval'), queries from 'test',
# OpenFlamingo's prompt, CIDEr. Images as COCO ships them under data/coco
# (train2014/, val2014/ named by the Karpathy json's filepath).
coco_root = 'data/coco'
fewshot_eval = dict(
    task='caption',
    support=dict(
        type='KarpathyCaptionDataset',
        data_root=coco_root,
        ann_file='dataset_coco.json',
        split=['train', 'restval'],
        data_prefix=dict(img_path=coco_root)),
    query=dict(
        type='KarpathyCaptionDataset',
        data_root=coco_root,
        ann_file='dataset_coco.json',
        split='test',
        data_prefix=dict(img_path=coco_root)),
    shots=[0, 4, 8, 16, 32],
    num_trials=3,
    seed=42,
    demo_selection='random',
    batch_size=8,
    metric=dict(type='CaptionMetric', metrics=['CIDEr']))
