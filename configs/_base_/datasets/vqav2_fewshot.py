# Few-shot VQAv2 as OpenFlamingo evaluates it: demos from train2014, queries
# from val2014, OpenFlamingo's prompt ("Question:... Short answer:") and cut
# of the generations, the official VQA accuracy. Files as the VQA site ships
# them under data/vqav2. The Runner's test loop, as in
# ./coco_caption_fewshot.py.
vqa_root = 'data/vqav2'
test_dataloader = dict(
    batch_size=8,
    num_workers=0,
    dataset=dict(
        type='VQADataset',
        data_root=vqa_root,
        question_file='v2_OpenEnded_mscoco_val2014_questions.json',
        annotation_file='v2_mscoco_val2014_annotations.json',
        split='val',
        image_name='COCO_val2014_{image_id:012d}.jpg',
        data_prefix=dict(img_path=vqa_root + '/val2014')),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='VQAAccuracy')
test_cfg = dict(
    type='FewShotTestLoop',
    task='vqa',
    support=dict(
        type='VQADataset',
        data_root=vqa_root,
        question_file='v2_OpenEnded_mscoco_train2014_questions.json',
        annotation_file='v2_mscoco_train2014_annotations.json',
        split='train',
        image_name='COCO_train2014_{image_id:012d}.jpg',
        data_prefix=dict(img_path=vqa_root + '/train2014')),
    shots=[0, 4, 8, 16, 32],
    num_trials=3,
    seed=42,
    demo_selection='random',
    # OpenFlamingo's cut of the generations ('no_comma_cut' keeps
    # 'washington, dc'); the metric scores the answers as cut
    answer_postprocess='openflamingo')
