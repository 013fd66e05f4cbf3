"""Tiny, randomly initialised Flamingo parts for tests, demos and benchmarks.

Nothing here downloads anything: the tokenizer is a byte-level BPE trained in
a fraction of a second on a built-in corpus, and the models are built from
config dicts.
"""
import os
import os.path as osp
from typing import Optional, Sequence

_CORPUS = [
    'a photo of a red circle on a white background.',
    'a blue square next to a green triangle.',
    'two yellow stars above a purple hexagon.',
    'Question: what colour is the shape? Short answer: red',
    'Question: how many shapes are there? Short answer: three',
    'Output: a small orange ellipse in the top left corner.',
    'the quick brown fox jumps over the lazy dog.',
    'an image of a cat sitting on a mat, looking at the camera.',
    'a man riding a bicycle down a city street.',
    'a plate of food with vegetables and rice.',
    'Is this picture taken indoors? yes no maybe',
    'a video of a ball moving from left to right.',
]

TINY_LM_CONFIGS = {
    'llama':
    dict(model_type='llama', num_attention_heads=4, num_key_value_heads=2),
    # Llama 3's RoPE scaling; with 64 original positions it changes most of
    # the tiny model's frequencies (those of wavelength > 16)
    'llama3':
    dict(
        model_type='llama',
        num_attention_heads=4,
        num_key_value_heads=2,
        rope_scaling=dict(
            rope_type='llama3',
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=64)),
    'mistral':
    dict(
        model_type='mistral',
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=None),
    'qwen2':
    dict(model_type='qwen2', num_attention_heads=4, num_key_value_heads=2),
    'qwen3':
    dict(
        model_type='qwen3',
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16),
    'gemma':
    dict(
        model_type='gemma',
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16),
    # Sliding windows of 4096 (the default): the tiny texts fit in one.
    # Untied: at random init its embeddings, scaled by sqrt(hidden), outweigh
    # what its post-normed layers add, and tied output rows then repeat the
    # input token whatever the context (the tied path is Gemma's, OPT's...)
    'gemma2':
    dict(
        model_type='gemma2',
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        tie_word_embeddings=False),
    # Gemma 3's text model; untied as Gemma 2
    'gemma3':
    dict(
        model_type='gemma3_text',
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        tie_word_embeddings=False),
    'phi':
    dict(model_type='phi', num_attention_heads=4),
    # its default pad id, 32000, is past the tiny vocabulary
    'phi3':
    dict(
        model_type='phi3',
        num_attention_heads=4,
        num_key_value_heads=2,
        pad_token_id=None),
    'olmo2':
    dict(model_type='olmo2', num_attention_heads=4, num_key_value_heads=2),
    'opt':
    dict(
        model_type='opt',
        num_attention_heads=4,
        ffn_dim=128,
        word_embed_proj_dim=64,
        max_position_embeddings=512),
    'gpt2':
    dict(model_type='gpt2', n_head=4, n_positions=512),
    'gpt_neox':
    dict(model_type='gpt_neox', num_attention_heads=4),
    'mpt':
    dict(model_type='mpt', n_heads=4, max_seq_len=512),
}


def tiny_lm_config(model_type: str = 'llama',
                   hidden_size: int = 64,
                   num_layers: int = 2,
                   vocab_size: int = 512,
                   **overrides) -> dict:
    """A ``FlamingoLMHead.lm['config']`` dict for a tiny LM of that type.

    Args:
        model_type (str): One of ``TINY_LM_CONFIGS``.
        hidden_size (int): Hidden size. Defaults to 64.
        num_layers (int): Decoder layers. Defaults to 2.
        vocab_size (int): Embedding rows (>= the tokenizer's size).
            Defaults to 512.
        **overrides: Extra config kwargs.
    """
    cfg = dict(TINY_LM_CONFIGS[model_type])
    if model_type == 'mpt':
        cfg.update(d_model=hidden_size, n_layers=num_layers, expansion_ratio=2)
    elif model_type == 'gpt2':
        cfg.update(n_embd=hidden_size, n_layer=num_layers)
    elif model_type == 'opt':
        cfg.update(
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            ffn_dim=2 * hidden_size,
            word_embed_proj_dim=hidden_size)
    else:
        cfg.update(
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            intermediate_size=2 * hidden_size)
    cfg.update(vocab_size=vocab_size, **overrides)
    return cfg


def build_tiny_tokenizer(save_dir: str,
                         vocab_size: int = 320,
                         extra_texts: Sequence[str] = ()) -> str:
    """Train a byte-level BPE tokenizer and save it (``save_pretrained``).

    Its special tokens are ``<|endoftext|>`` (bos, eos, unk); it has no pad
    token, like GPT-2, so Flamingo adds ``<PAD>``.

    Args:
        save_dir (str): Directory to write; reused if it already holds one.
        vocab_size (int): BPE vocabulary size. Defaults to 320.
        extra_texts (Sequence[str]): Texts trained on beside the built-in
            corpus (with a larger ``vocab_size``, words of them become
            fewer tokens, e.g. class names as long as a real tokenizer
            makes them). Defaults to none.

    Returns:
        str: ``save_dir``.
    """
    if osp.isfile(osp.join(save_dir, 'tokenizer.json')):
        return save_dir
    from tokenizers import (Tokenizer, decoders, models, pre_tokenizers,
                            trainers)
    from transformers import PreTrainedTokenizerFast
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=['<|endoftext|>'],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False)
    tokenizer.train_from_iterator([*_CORPUS, *extra_texts], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token='<|endoftext|>',
        eos_token='<|endoftext|>',
        unk_token='<|endoftext|>')
    os.makedirs(save_dir, exist_ok=True)
    fast.save_pretrained(save_dir)
    return save_dir


def tiny_flamingo_config(tokenizer_dir: str,
                         lm_type: str = 'llama',
                         lm_config: Optional[dict] = None,
                         vision_width: int = 32,
                         image_size: int = 32,
                         cross_attn_every_n_layers: int = 1,
                         **head_overrides) -> dict:
    """A complete ``Flamingo`` model config with tiny random parts.

    Args:
        tokenizer_dir (str): From :func:`build_tiny_tokenizer`.
        lm_type (str): LM architecture. Defaults to ``'llama'``.
        lm_config (dict, optional): Overrides :func:`tiny_lm_config`.
        vision_width (int): CLIP hidden size. Defaults to 32.
        image_size (int): Input resolution. Defaults to 32.
        cross_attn_every_n_layers (int): Defaults to 1.
        **head_overrides: Extra ``FlamingoLMHead`` kwargs.
    """
    return dict(
        type='Flamingo',
        tokenizer=dict(pretrained=tokenizer_dir),
        backbone=dict(
            type='HFCLIPVisionEncoder',
            config=dict(
                hidden_size=vision_width,
                intermediate_size=2 * vision_width,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=image_size,
                patch_size=8)),
        neck=dict(
            type='PerceiverResampler',
            depth=2,
            dim_head=16,
            heads=2,
            num_latents=4),
        head=dict(
            type='FlamingoLMHead',
            lm=dict(config=tiny_lm_config(lm_type, **(lm_config or {}))),
            cross_attn_every_n_layers=cross_attn_every_n_layers,
            xattn_cfg=dict(dim_head=16, heads=2),
            **head_overrides),
        generation_cfg=dict(max_new_tokens=8, num_beams=1))
