# The tiny Flamingo trained on the toy mixture with mmengine's Runner: fp32 on
# a CPU, bf16 AMP on a GPU with --amp. Make the data and tokenizer with
#   python tools/misc/make_tiny_assets.py && python tools/misc/make_toy_data.py
_base_ = [
    '../_base_/models/flamingo_tiny.py',
    '../_base_/datasets/toy_mixture.py',
    '../_base_/schedules/flamingo_adamw_warmup-constant.py',
    '../_base_/default_runtime.py',
]
model = dict(neck=dict(max_num_frames=4), max_text_length=64)
warmup_iters = 10
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
]
optim_wrapper = dict(optimizer=dict(lr=1e-3))
train_cfg = dict(max_iters=40)
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=20))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
