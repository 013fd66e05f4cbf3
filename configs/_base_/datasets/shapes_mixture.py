# The shapes world's training mixture (written by
# tools/misc/make_shapes_world.py): interleaved documents (scene documents and
# binding episodes, up to 9 images: an 8-shot prompt and its query), image-text
# pairs and video-text pairs, each with its loss weight.
shapes_root = 'data/shapes'
tokenizer = dict(pretrained='checkpoints/shapes/lm')
image_size = 64
# no flips: the captions say "left" and "right"
image_pipeline = [
    dict(type='LoadMedia'),
    dict(type='ResizeMedia', size=image_size),
    dict(type='PackFlamingoInputs', meta_keys=['source']),
]
video_pipeline = [
    dict(type='LoadVideoFrames', num_frames=4, fps=0.5),
    dict(type='ResizeMedia', size=image_size),
    dict(type='PackFlamingoInputs', meta_keys=['source']),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    datasets=dict(
        interleaved=dict(
            loss_weight=1.0,
            dataset=dict(
                type='MMC4Interleaved',
                data_root=shapes_root,
                ann_file='interleaved/docs.jsonl',
                data_prefix=dict(img_path='images'),
                tokenizer=tokenizer,
                max_tokens=512,
                max_num_images=9,
                min_image_bytes=0,
                sim_threshold=0.0,
                single_image_drop_prob=0.0,
                pipeline=image_pipeline)),
        pairs=dict(
            loss_weight=0.2,
            dataset=dict(
                type='JsonlImageText',
                data_root=shapes_root,
                ann_file='pairs.jsonl',
                data_prefix=dict(img_path='images'),
                tokenizer=tokenizer,
                pipeline=image_pipeline)),
        video=dict(
            loss_weight=0.2,
            dataset=dict(
                type='VideoTextPairs',
                data_root=shapes_root,
                ann_file='videos.jsonl',
                data_prefix=dict(video='videos'),
                tokenizer=tokenizer,
                pipeline=video_pipeline)),
    ))
