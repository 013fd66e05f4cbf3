# OpenFlamingo-9B-vitl-mpt7b: CLIP ViT-L/14 + MPT-7B, a cross-attention
# block before every 4th decoder layer.
#
# data/checkpoints/mpt-7b: a local copy of anas-awadalla/mpt-7b, made where
# the hub is reachable with `save_pretrained(DIR)` of its
# AutoModelForCausalLM (transformers' own MPT, no remote code) and
# AutoTokenizer.
# data/checkpoints/openflamingo-9b-vitl-mpt7b_mmflamingo.pth: the
# checkpoint.pt of openflamingo/OpenFlamingo-9B-vitl-mpt7b converted with
#   python tools/model_converters/openflamingo_to_mmflamingo.py \
#       data/checkpoints/OpenFlamingo-9B-vitl-mpt7b/checkpoint.pt \
#       data/checkpoints/openflamingo-9b-vitl-mpt7b_mmflamingo.pth
_base_ = ['../_base_/models/openflamingo_vitl14.py']

default_scope = 'mmflamingo'

model = dict(
    tokenizer=dict(pretrained='data/checkpoints/mpt-7b'),
    head=dict(
        lm=dict(pretrained='data/checkpoints/mpt-7b'),
        cross_attn_every_n_layers=4),
    checkpoint='data/checkpoints/openflamingo-9b-vitl-mpt7b_mmflamingo.pth')
