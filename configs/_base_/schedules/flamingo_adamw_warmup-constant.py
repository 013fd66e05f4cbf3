# The paper's optimisation: AdamW, weight decay 0.1 on the cross-attention
# blocks and none on the perceiver or the new token rows, linear warm-up then
# a constant learning rate, gradient norm clipped at 1. Only the trained
# parameters reach the optimizer.
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='TrainableOptimWrapperConstructor',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    clip_grad=dict(max_norm=1.0),
    paramwise_cfg=dict(
        custom_keys={
            'neck': dict(decay_mult=0.0),
            'new_weight': dict(decay_mult=0.0),
            'new_bias': dict(decay_mult=0.0),
        }))
warmup_iters = 5000
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-6,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
]
# each optimizer step takes one batch from every dataset (see MixtureTrainLoop)
train_cfg = dict(
    type='MixtureTrainLoop', max_iters=250000, strategy='accumulate')
