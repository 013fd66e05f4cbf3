# Stage 1 of the shapes recipe: a tiny CLIP trained from scratch with CLIP's
# contrastive loss on the shapes world's training captions (a random one of
# each image's five per visit). Its vision tower becomes Flamingo's frozen
# vision encoder: the export loads with
# HFCLIPVisionEncoder(pretrained='work_dirs/shapes/vision/hf').
# Needs the world (data/shapes) and the BPE tokenizer
# (tools/misc/train_bpe_tokenizer.py data/shapes/text/corpus.txt
#  --out-dir work_dirs/shapes/tokenizer).
_base_ = ['../_base_/default_runtime.py']

data_root = 'data/shapes'
tokenizer = dict(pretrained='work_dirs/shapes/tokenizer')
image_size = 64

model = dict(
    type='ContrastiveImageTextPretrainer',
    tokenizer=tokenizer,
    clip_cfg=dict(
        vision_config=dict(
            hidden_size=128,
            intermediate_size=512,
            num_hidden_layers=4,
            num_attention_heads=4,
            image_size=image_size,
            patch_size=8),
        text_config=dict(
            hidden_size=128,
            intermediate_size=512,
            num_hidden_layers=4,
            num_attention_heads=4,
            max_position_embeddings=32),
        projection_dim=128),
    data_preprocessor=dict(type='FlamingoDataPreprocessor'))

# no flips: the captions say "left" and "right"
train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type='KarpathyCaptionDataset',
        data_root=data_root,
        ann_file='captions/karpathy_shapes.json',
        split='train',
        data_prefix=dict(img_path='images'),
        pipeline=[
            dict(type='RandomCaption'),
            dict(type='LoadMedia'),
            dict(type='ResizeMedia', size=image_size),
            dict(type='PackFlamingoInputs'),
        ]))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, betas=(0.9, 0.98), weight_decay=0.1),
    clip_grad=dict(max_norm=1.0),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'logit_scale': dict(decay_mult=0.0)}))
# 300 steps left its features poor at telling the shape types apart (a
# linear probe of its mean-pooled patch tokens: 50%); 1,500 give 82%
max_iters = 1500
warmup_iters = 100
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=False,
        begin=warmup_iters,
        end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)

default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
custom_hooks = [
    dict(type='SavePretrainedHook', out_dir='work_dirs/shapes/vision/hf')
]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
work_dir = 'work_dirs/shapes/vision'
