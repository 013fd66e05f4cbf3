# OpenFlamingo-3B-vitl-mpt1b: CLIP ViT-L/14 + MPT-1B RedPajama-200b,
# a cross-attention block before every decoder layer.
#
# data/checkpoints/mpt-1b-redpajama-200b: a local copy of
# anas-awadalla/mpt-1b-redpajama-200b, made where the hub is reachable with
#   huggingface_hub.snapshot_download(
#       'anas-awadalla/mpt-1b-redpajama-200b',
#       local_dir='data/checkpoints/mpt-1b-redpajama-200b')
# Its config.json says model_type "mosaic_gpt": its own modelling code
# (MosaicGPT) is never run; the LM is built as transformers' MPT with
# MosaicGPT's weights renamed onto it (mmflamingo/models/utils/mosaic_gpt.py),
# so no trust_remote_code.
# data/checkpoints/openflamingo-3b-vitl-mpt1b_mmflamingo.pth: the
# checkpoint.pt of openflamingo/OpenFlamingo-3B-vitl-mpt1b converted with
#   python tools/model_converters/openflamingo_to_mmflamingo.py \
#       data/checkpoints/OpenFlamingo-3B-vitl-mpt1b/checkpoint.pt \
#       data/checkpoints/openflamingo-3b-vitl-mpt1b_mmflamingo.pth
_base_ = ['../_base_/models/openflamingo_vitl14.py']

default_scope = 'mmflamingo'

model = dict(
    tokenizer=dict(pretrained='data/checkpoints/mpt-1b-redpajama-200b'),
    head=dict(
        lm=dict(pretrained='data/checkpoints/mpt-1b-redpajama-200b'),
        decoder_layers_attr='transformer.blocks',
        cross_attn_every_n_layers=1),
    checkpoint='data/checkpoints/openflamingo-3b-vitl-mpt1b_mmflamingo.pth')
