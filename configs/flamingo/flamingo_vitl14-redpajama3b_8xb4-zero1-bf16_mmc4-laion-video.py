# As the AMP config, with DeepSpeed ZeRO-1 and bf16 on mmengine's
# FlexibleRunner: optimizer states are partitioned over the GPUs, the frozen
# weights are held in bf16 and the trained ones keep fp32 masters.
#   bash tools/dist_train.sh CONFIG 8
_base_ = ['./flamingo_vitl14-redpajama3b_8xb4-amp-bf16_mmc4-laion-video.py']
runner_type = 'FlexibleRunner'
strategy = dict(
    type='DeepSpeedStrategy',
    zero_optimization=dict(stage=1),
    bf16=dict(enabled=True),
    gradient_clipping=1.0,
    inputs_to_half=['images'],
    exclude_frozen_parameters=True)
optim_wrapper = dict(
    _delete_=True,
    type='NoGradStepDeepSpeedOptimWrapper',
    constructor='TrainableOptimWrapperConstructor',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    paramwise_cfg=dict(
        custom_keys={
            'neck': dict(decay_mult=0.0),
            'new_weight': dict(decay_mult=0.0),
            'new_bias': dict(decay_mult=0.0),
        }))
