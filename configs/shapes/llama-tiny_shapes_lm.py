# Stage 2d of the shapes recipe (--from-scratch): the binding LM of stage 2c
# back on the whole text mixture of stage 2b, which brings copying and reading
# back and keeps binding (the shipped LM, held-out text: copy 6.97 -> 0.01
# nats, binding 100% at 4 and 8 shots against chance 29.5%, reading 76%
# against a 32% prior). It becomes Flamingo's frozen language model: the
# export (model and tokenizer) loads with head.lm=dict(pretrained=DIR) and
# tokenizer=dict(pretrained=DIR). The recipe checks it with the probes of
# mmflamingo/shapes_world/probes.py before Flamingo trains on it.
_base_ = ['./llama-tiny_shapes_lm-text.py']

model = dict(pretrained='work_dirs/shapes/lm-binding/hf')

max_iters = 1000
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
    dict(type='SavePretrainedHook', out_dir='work_dirs/shapes/lm/hf')
]
work_dir = 'work_dirs/shapes/lm'
