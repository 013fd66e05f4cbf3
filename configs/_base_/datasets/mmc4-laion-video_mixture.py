# The paper's training mixture with its loss weights: interleaved web
# documents (MMC4 shards) 1.0, image-text pairs (LAION shards) 0.2 and
# video-text pairs 0.03. Each optimizer step takes one batch of each (see
# MixtureTrainLoop). Paths are local; the shards are WebDataset tars as
# MMC4 and LAION/img2dataset distribute them.
tokenizer = dict(pretrained='data/checkpoints/RedPajama-INCITE-Base-3B-v1')
image_pipeline = [
    dict(type='LoadMedia'),
    dict(type='RandomFlipMedia', prob=0.5),
    dict(type='ResizeMedia', size=224),
    dict(type='PackFlamingoInputs', meta_keys=['source']),
]
video_pipeline = [
    dict(type='LoadVideoFrames', num_frames=8, fps=1.0),
    dict(type='ResizeMedia', size=224),
    dict(type='PackFlamingoInputs', meta_keys=['source']),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    datasets=dict(
        mmc4=dict(
            loss_weight=1.0,
            dataset=dict(
                type='WebDatasetInterleaved',
                data_root='data/mmc4',
                shards='shards/{00000..09999}.tar',
                tokenizer=tokenizer,
                max_tokens=256,
                max_num_images=5,
                sim_threshold=0.24,
                pipeline=image_pipeline)),
        laion=dict(
            loss_weight=0.2,
            batch_size=8,
            dataset=dict(
                type='WebDatasetImageText',
                data_root='data/laion',
                shards='shards/{00000..09999}.tar',
                tokenizer=tokenizer,
                max_tokens=32,
                pipeline=image_pipeline)),
        video=dict(
            loss_weight=0.03,
            dataset=dict(
                type='VideoTextPairs',
                data_root='data/video',
                ann_file='train.jsonl',
                data_prefix=dict(video='videos'),
                tokenizer=tokenizer,
                pipeline=video_pipeline)),
    ))
