# Stage 2a of the shapes recipe (--from-scratch): a tiny LLaMA learns to copy
# what came before, on rows of random tokens repeated until the row is full.
# This is the plainest in-context task, and the one that gives a transformer
# its induction heads (Olsson et al., 2022): with the world's text from the
# start they formed in none of our trials, on their own they form after about
# 1,000 steps. Stage 2b (llama-tiny_shapes_lm.py) goes on from here.
# Needs the world (data/shapes) and its tokenizer
# (tools/misc/train_bpe_tokenizer.py data/shapes/text/corpus.txt
#  --out-dir work_dirs/shapes/tokenizer --flamingo-tokens).
_base_ = ['../_base_/default_runtime.py']
custom_imports = dict(
    imports=['mmflamingo.engine', 'mmflamingo.shapes_world'],
    allow_failed_imports=False)

data_root = 'data/shapes'
tokenizer = dict(pretrained='work_dirs/shapes/tokenizer')

model = dict(
    type='CausalLMPretrainer',
    tokenizer=tokenizer,
    config=dict(
        model_type='llama',
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=True))

train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='ShapesTextEpisodes',
        data_root=data_root,
        lm_world='text/lm_world.json',
        tokenizer=tokenizer,
        mix=dict(copy=1.0),
        max_tokens=128))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.98), weight_decay=0.0),
    clip_grad=dict(max_norm=1.0))
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
        eta_min=1e-4,
        by_epoch=False,
        begin=warmup_iters,
        end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)

default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
custom_hooks = [
    dict(
        type='SavePretrainedHook', out_dir='work_dirs/shapes/lm-induction/hf')
]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
work_dir = 'work_dirs/shapes/lm-induction'
