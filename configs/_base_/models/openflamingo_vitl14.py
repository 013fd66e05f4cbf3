# The parts OpenFlamingo v2 models share: CLIP ViT-L/14 patch tokens (last
# block, no CLS, before the final LayerNorm), a Perceiver Resampler of depth 6
# with 8 heads of 64 and 64 latents, and GATED XATTN-DENSE blocks placed as
# OpenFlamingo places them (before layer i when (i + 1) % n == 0), each token
# attending to its most recent image. A recipe adds the language model, its
# tokenizer, `cross_attn_every_n_layers` and the converted checkpoint.
#
# data/checkpoints/clip-vit-large-patch14: a local copy of
# openai/clip-vit-large-patch14, made where the hub is reachable with
#   transformers.CLIPModel.from_pretrained(
#       'openai/clip-vit-large-patch14').save_pretrained(
#           'data/checkpoints/clip-vit-large-patch14')
# (a CLIPVisionModel saved the same way works too).
model = dict(
    type='Flamingo',
    backbone=dict(
        type='HFCLIPVisionEncoder',
        pretrained='data/checkpoints/clip-vit-large-patch14',
        out_layer=-1,
        final_norm=False),
    # dim defaults to the backbone's width (1024)
    neck=dict(
        type='PerceiverResampler',
        depth=6,
        dim_head=64,
        heads=8,
        num_latents=64,
        ff_mult=4,
        act='gelu'),
    head=dict(
        type='FlamingoLMHead',
        xattn_placement='openflamingo',
        only_attend_last_media=True,
        xattn_cfg=dict(dim_head=64, heads=8, ff_mult=4, act='gelu')),
    # CLIP's normalisation, as OpenCLIP's ViT-L-14 (openai) transform
    data_preprocessor=dict(type='FlamingoDataPreprocessor'),
    task='caption',
    # OpenFlamingo's evaluate.py captioning defaults (min_new_tokens 0); its
    # VQA runs use max_new_tokens=5 (10 for TextVQA)
    generation_cfg=dict(num_beams=3, max_new_tokens=20, length_penalty=0.0))
