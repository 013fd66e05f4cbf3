# Stage 2c of the shapes recipe (--from-scratch): binding episodes only, the
# bursty data of in-context learning (Chan et al., 2022): each row holds
# episodes where 3 or 4 shape types get names drawn for that episode alone,
# so that only the episode's earlier chunks tell a name. Mixed with the other
# text (stage 2b) the LM stays at "a name the context showed". Alone, on top
# of stage 2b, binding forms after a plateau (a phase change, as Olsson et
# al. 2022 and Reddy 2023 describe): on this world, whose names are 2-3
# tokens, text binding (4/8 shots, chance 29.5%) is 35/28% at step 250 and
# 36/29% at 500, then 96/95% at 750 and 100/100% from 1,000 on (shapes named
# by their type word; 87/87% when described in full at 1,250). The stage
# forgets copying and reading, which stage 2d (llama-tiny_shapes_lm.py)
# brings back. 500 steps, the earlier setting, stopped before the change.
_base_ = ['./llama-tiny_shapes_lm-text.py']

model = dict(pretrained='work_dirs/shapes/lm-text/hf')

# rows of 256 tokens hold one or two whole episodes
train_dataloader = dict(
    batch_size=16,
    dataset=dict(
        mix=dict(_delete_=True, binding=1.0),
        max_tokens=256,
        shape_question_prob=0.0))

max_iters = 1500
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
    dict(type='SavePretrainedHook', out_dir='work_dirs/shapes/lm-binding/hf')
]
work_dir = 'work_dirs/shapes/lm-binding'
