# Stage 2b of the shapes recipe (--from-scratch): the LM of stage 2a learns the
# world's text (mmflamingo/shapes_world/text_episodes.py): chunks with the
# structure of the few-shot prompts, each image stood in for by its
# description, in binding episodes, caption-and-question documents, captions
# and videos, with repeated random spans kept in the mix so that the induction
# heads stay, in 384-token rows (an 8-shot prompt fits). It copies and reads
# after this stage, but does not bind names yet: in this mixture it settles
# on "a name the context showed" (the note of issue 10 has the runs); stage 2c
# (llama-tiny_shapes_lm-binding.py) goes on from here.
_base_ = ['./llama-tiny_shapes_lm-induction.py']

model = dict(
    _delete_=True,
    type='CausalLMPretrainer',
    tokenizer={{_base_.tokenizer}},
    pretrained='work_dirs/shapes/lm-induction/hf')

train_dataloader = dict(
    batch_size=12,
    dataset=dict(
        mix=dict(copy=0.2, binding=0.45, reading=0.2, caption=0.1, video=0.05),
        max_tokens=384))

max_iters = 3000
warmup_iters = 50
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
default_hooks = dict(checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
custom_hooks = [
    dict(type='SavePretrainedHook', out_dir='work_dirs/shapes/lm-text/hf')
]
work_dir = 'work_dirs/shapes/lm-text'
