# OpenFlamingo-3B-vitl-mpt1b: CLIP ViT-L/14 + MPT-1B RedPajama-200b,
# a cross-attention block before every decoder layer.
#
# data/checkpoints/mpt-1b-redpajama-200b: a local copy of
# anas-awadalla/mpt-1b-redpajama-200b with its modelling code (MosaicGPT,
# hence trust_remote_code), made where the hub is reachable with
#   AutoModelForCausalLM.from_pretrained(
#       'anas-awadalla/mpt-1b-redpajama-200b',
#       trust_remote_code=True).save_pretrained(DIR)
#   AutoTokenizer.from_pretrained(
#       'anas-awadalla/mpt-1b-redpajama-200b').save_pretrained(DIR)
# data/checkpoints/openflamingo-3b-vitl-mpt1b_mmflamingo.pth: the
# checkpoint.pt of openflamingo/OpenFlamingo-3B-vitl-mpt1b converted with
#   python tools/model_converters/openflamingo_to_mmflamingo.py \
#       data/checkpoints/OpenFlamingo-3B-vitl-mpt1b/checkpoint.pt \
#       data/checkpoints/openflamingo-3b-vitl-mpt1b_mmflamingo.pth
#
# NOTE: MosaicGPT has no get_input_embeddings() (OpenFlamingo's factory
# patches one in) and computes its logits from `transformer.wte.weight`
# directly, so FlamingoLMHead needs support for it before this config builds.
_base_ = ['../_base_/models/openflamingo_vitl14.py']

default_scope = 'mmflamingo'

model = dict(
    tokenizer=dict(pretrained='data/checkpoints/mpt-1b-redpajama-200b'),
    head=dict(
        lm=dict(
            pretrained='data/checkpoints/mpt-1b-redpajama-200b',
            trust_remote_code=True),
        decoder_layers_attr='transformer.blocks',
        cross_attn_every_n_layers=1),
    checkpoint='data/checkpoints/openflamingo-3b-vitl-mpt1b_mmflamingo.pth')
