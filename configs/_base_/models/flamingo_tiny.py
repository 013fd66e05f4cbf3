# A tiny Flamingo with random weights (CLIP-style ViT + LLaMA-style LM): the
# whole architecture in a few MB, for smoke runs on a laptop CPU. Its
# tokenizer is made by `python tools/misc/make_tiny_assets.py`.
model = dict(
    type='Flamingo',
    tokenizer=dict(pretrained='work_dirs/tiny_assets/tokenizer'),
    backbone=dict(
        type='HFCLIPVisionEncoder',
        config=dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=64,
            patch_size=16)),
    neck=dict(
        type='PerceiverResampler',
        depth=2,
        dim_head=16,
        heads=4,
        num_latents=8),
    head=dict(
        type='FlamingoLMHead',
        lm=dict(
            config=dict(
                model_type='llama',
                hidden_size=128,
                intermediate_size=256,
                num_hidden_layers=4,
                num_attention_heads=4,
                num_key_value_heads=2,
                vocab_size=512)),
        cross_attn_every_n_layers=2,
        xattn_cfg=dict(dim_head=32, heads=4)),
    data_preprocessor=dict(type='FlamingoDataPreprocessor'),
    generation_cfg=dict(num_beams=3, max_new_tokens=12, length_penalty=0.0))
