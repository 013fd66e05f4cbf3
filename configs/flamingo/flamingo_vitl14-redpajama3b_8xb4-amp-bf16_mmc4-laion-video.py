# Flamingo on CLIP ViT-L/14 and RedPajama-INCITE-3B (OpenFlamingo-4B's
# parts), trained on the paper's mixture with mmengine's Runner, DDP and
# bf16 autocast on GPUs:
#   bash tools/dist_train.sh CONFIG 8
_base_ = [
    '../_base_/models/openflamingo_vitl14.py',
    '../_base_/datasets/mmc4-laion-video_mixture.py',
    '../_base_/schedules/flamingo_adamw_warmup-constant.py',
    '../_base_/default_runtime.py',
]
model = dict(
    tokenizer=dict(pretrained='data/checkpoints/RedPajama-INCITE-Base-3B-v1'),
    backbone=dict(dtype='bfloat16'),
    neck=dict(max_num_frames=8),
    head=dict(
        lm=dict(
            pretrained='data/checkpoints/RedPajama-INCITE-Base-3B-v1',
            torch_dtype='bfloat16'),
        cross_attn_every_n_layers=2,
        gradient_checkpointing=True),
    max_text_length=256)
optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16')
