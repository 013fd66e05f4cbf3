# A tiny mixture in the three training formats (written by
# mmflamingo.testing.toy_data.write_toy_mixture): interleaved documents,
# image-text pairs and video-text pairs, with the paper's loss weights.
toy_root = 'data/toy'
tokenizer = dict(pretrained='work_dirs/tiny_assets/tokenizer')
image_pipeline = [
    dict(type='LoadMedia'),
    dict(type='RandomFlipMedia', prob=0.5),
    dict(type='ResizeMedia', size=64),
    dict(type='PackFlamingoInputs', meta_keys=['source']),
]
video_pipeline = [
    dict(type='LoadVideoFrames', num_frames=4, fps=1.0),
    dict(type='ResizeMedia', size=64),
    dict(type='PackFlamingoInputs', meta_keys=['source']),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    # infinite: the loop never waits for a dataloader to restart
    sampler=dict(type='InfiniteSampler', shuffle=True),
    datasets=dict(
        interleaved=dict(
            loss_weight=1.0,
            dataset=dict(
                type='MMC4Interleaved',
                data_root=toy_root,
                ann_file='docs.jsonl',
                data_prefix=dict(img_path='images'),
                tokenizer=tokenizer,
                min_image_bytes=0,
                pipeline=image_pipeline)),
        pairs=dict(
            loss_weight=0.2,
            dataset=dict(
                type='JsonlImageText',
                data_root=toy_root,
                ann_file='pairs.jsonl',
                data_prefix=dict(img_path='images'),
                tokenizer=tokenizer,
                pipeline=image_pipeline)),
        video=dict(
            loss_weight=0.03,
            dataset=dict(
                type='VideoTextPairs',
                data_root=toy_root,
                ann_file='videos.jsonl',
                data_prefix=dict(video='videos'),
                tokenizer=tokenizer,
                pipeline=video_pipeline)),
    ))
