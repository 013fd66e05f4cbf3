# Stage 3 of the shapes recipe: Flamingo on the shapes world. The vision
# encoder and the language model are the recipe's pretrained parts
# (checkpoints/shapes/{vision,lm}, made by `tools/shapes_recipe.py
# --from-scratch`), frozen; the Perceiver Resampler, the gated cross-attention
# blocks and the rows of the Flamingo tokens are trained on the mixture of
# interleaved documents, pairs and videos. Run by
# `bash tools/run_shapes_recipe.sh`, or
#   python tools/train.py configs/shapes/flamingo-tiny_shapes_mixture.py
_base_ = [
    '../_base_/datasets/shapes_mixture.py',
    '../_base_/schedules/flamingo_adamw_warmup-constant.py',
    '../_base_/default_runtime.py',
]
lm = 'checkpoints/shapes/lm'
vision = 'checkpoints/shapes/vision'
model = dict(
    type='Flamingo',
    tokenizer=dict(pretrained=lm),
    # the frozen encoder's tokens of every training frame are kept (about
    # 26,000 distinct frames: scenes, episode images, video frames; 1 GB):
    # 1,600 steps encode ~141,000 frames, 4 in 5 of them cache hits. With the
    # loader processes below the stage takes 668 s instead of 935 (2 threads
    # on a 2-core AVX2 machine) and ends with the same weights: the results
    # table is the same to the last digit (a frame's tokens do not depend on
    # the batch it came in)
    backbone=dict(
        type='HFCLIPVisionEncoder', pretrained=vision, cache_size=30000),
    # spatial embeddings: without them the latents tell where a shape is
    # only after thousands of steps (a single shape's slot 67% after 400
    # steps of direct supervision, >97% with them; held-out video motion 40%
    # -> 98% and caption positions 50% -> 98% after 1,200 steps)
    neck=dict(
        type='PerceiverResampler',
        depth=2,
        dim_head=32,
        heads=4,
        num_latents=16,
        max_num_frames=4,
        max_num_patches=64),
    head=dict(
        type='FlamingoLMHead',
        lm=dict(pretrained=lm),
        cross_attn_every_n_layers=1,
        xattn_cfg=dict(dim_head=32, heads=4, ff_mult=2)),
    max_text_length=512,
    data_preprocessor=dict(type='FlamingoDataPreprocessor'),
    # a three-shape caption is up to 26 tokens
    generation_cfg=dict(num_beams=1, max_new_tokens=32))
# one loader process per dataset decodes the next batch (videos mostly: 69
# of the 90 ms a step's samples take) while the model trains on this one
train_dataloader = dict(num_workers=1, persistent_workers=True)
warmup_iters = 50
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
]
# the tanh gates learn 10x faster and without weight decay: a few hundred
# steps at the other parameters' rate leave them near 0 (the LM's prior wins)
optim_wrapper = dict(
    optimizer=dict(lr=1e-3),
    paramwise_cfg=dict(
        custom_keys={
            'neck': dict(decay_mult=0.0),
            'new_weight': dict(decay_mult=0.0),
            'new_bias': dict(decay_mult=0.0),
            '_gate': dict(lr_mult=10.0, decay_mult=0.0),
        }))
# on the binding LM (checkpoints/shapes/lm), in-context binding forms in
# this run's second half: training seed 1 at 1,000 steps binds 47% / 48%
# at 4 / 8 shots, at 1,600 steps 72% / 83% (chance 30%); the note of issue
# 10 has the runs
train_cfg = dict(max_iters=1600)
default_hooks = dict(
    logger=dict(interval=20), checkpoint=dict(interval=1600, max_keep_ckpts=1))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
work_dir = 'work_dirs/shapes/flamingo'
