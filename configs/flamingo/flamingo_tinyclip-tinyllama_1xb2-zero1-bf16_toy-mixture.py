# The tiny Flamingo on the toy mixture with DeepSpeed ZeRO-1 and bf16 on
# mmengine's FlexibleRunner; on a machine without GPUs it runs on gloo (one
# process, or several under torchrun: bash tools/dist_train.sh CONFIG 2).
_base_ = ['./flamingo_tinyclip-tinyllama_1xb2_toy-mixture.py']
strategy = dict(
    type='DeepSpeedStrategy',
    zero_optimization=dict(stage=1),
    bf16=dict(enabled=True),
    gradient_clipping=1.0,
    inputs_to_half=['images'],
    # checkpoints hold the trained parameters only
    exclude_frozen_parameters=True)
optim_wrapper = dict(
    _delete_=True,
    type='NoGradStepDeepSpeedOptimWrapper',
    constructor='TrainableOptimWrapperConstructor',
    optimizer=dict(
        type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.1),
    paramwise_cfg=dict(
        custom_keys={
            'neck': dict(decay_mult=0.0),
            'new_weight': dict(decay_mult=0.0),
            'new_bias': dict(decay_mult=0.0),
        }))
runner_type = 'FlexibleRunner'
