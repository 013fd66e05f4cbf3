# Stage 2 of the shapes recipe: a tiny LLaMA trained from scratch on the
# shapes world's text (next-token prediction). It becomes Flamingo's frozen
# language model: the export (model and tokenizer) loads with
# head.lm=dict(pretrained='work_dirs/shapes/lm/hf') and
# tokenizer=dict(pretrained='work_dirs/shapes/lm/hf').
# Needs the world (data/shapes) and the BPE tokenizer
# (tools/misc/train_bpe_tokenizer.py data/shapes/text/corpus.txt
#  --out-dir work_dirs/shapes/tokenizer).
_base_ = ['../_base_/default_runtime.py']

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
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True))

train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='TextCorpusDataset',
        data_root=data_root,
        ann_file='text/corpus.txt',
        tokenizer=tokenizer,
        max_tokens=128,
        pack=True))

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-3, betas=(0.9, 0.95), weight_decay=0.1),
    clip_grad=dict(max_norm=1.0),
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0, bypass_duplicate=True))
max_iters = 450
warmup_iters = 45
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
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
custom_hooks = [
    dict(type='SavePretrainedHook', out_dir='work_dirs/shapes/lm/hf')
]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
work_dir = 'work_dirs/shapes/lm'
