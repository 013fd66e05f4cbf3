# OpenFlamingo-4B-vitl-rpj3b: CLIP ViT-L/14 + RedPajama-INCITE-Base-3B-v1
# (GPT-NeoX), a cross-attention block before every 2nd decoder layer.
#
# data/checkpoints/RedPajama-INCITE-Base-3B-v1: a local copy of
# togethercomputer/RedPajama-INCITE-Base-3B-v1, made where the hub is
# reachable with `save_pretrained(DIR)` of its AutoModelForCausalLM and
# AutoTokenizer.
# data/checkpoints/openflamingo-4b-vitl-rpj3b_mmflamingo.pth: the
# checkpoint.pt of openflamingo/OpenFlamingo-4B-vitl-rpj3b converted with
#   python tools/model_converters/openflamingo_to_mmflamingo.py \
#       data/checkpoints/OpenFlamingo-4B-vitl-rpj3b/checkpoint.pt \
#       data/checkpoints/openflamingo-4b-vitl-rpj3b_mmflamingo.pth
_base_ = ['../_base_/models/openflamingo_vitl14.py']

default_scope = 'mmflamingo'

model = dict(
    tokenizer=dict(pretrained='data/checkpoints/RedPajama-INCITE-Base-3B-v1'),
    head=dict(
        lm=dict(pretrained='data/checkpoints/RedPajama-INCITE-Base-3B-v1'),
        cross_attn_every_n_layers=2),
    checkpoint='data/checkpoints/openflamingo-4b-vitl-rpj3b_mmflamingo.pth')
