"""OpenFlamingo as a numerical reference: tiny twins of OF and mmflamingo.

:func:`build_openflamingo_pair` builds a tiny OpenFlamingo model the way
OpenFlamingo's ``create_model_and_transforms`` does, gives its trained parts
random non-trivial values, saves them as OpenFlamingo saves checkpoints,
converts that checkpoint with our converter and builds our ``Flamingo`` from
the same local directories plus the converted file. Both models then compute
the same function, which equivalence tests and benchmarks compare.

``open_flamingo`` is a test and benchmark dependency only
(``requirements/reference.txt``): it is imported inside the functions.
"""
import copy
import os
import os.path as osp
from typing import List, Optional, Tuple

import torch
from torch import nn

from mmflamingo.compat import legacy_key_renamer
from .tiny import build_tiny_tokenizer, tiny_lm_config

__all__ = [
    'OpenCLIPStyleVisual', 'build_openflamingo', 'randomise_openflamingo',
    'openflamingo_trainable_state_dict', 'save_openflamingo_checkpoint',
    'build_openflamingo_pair', 'openflamingo_image_processor',
    'openflamingo_vision_x', 'openflamingo_rank_classifications'
]


class OpenCLIPStyleVisual(nn.Module):
    """A Hugging Face ``CLIPVisionModel`` behind OpenCLIP's visual interface.

    OpenFlamingo calls ``vision_encoder.visual(images)[1]`` for the patch
    tokens (OpenCLIP with ``output_tokens=True``). Here ``[1]`` is the last
    block's output without the CLS token and before ``post_layernorm``:
    what ``HFCLIPVisionEncoder`` returns with its defaults.

    Args:
        clip (CLIPVisionModel): The vision model.
    """

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self,
                images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        # (B', C, H, W) -> (B', 1 + P, D)
        hidden = self.clip(pixel_values=images).last_hidden_state
        return hidden[:, 0], hidden[:, 1:]


class _VisionTower(nn.Module):
    """What OpenFlamingo's ``Flamingo`` takes: a module with ``.visual``."""

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.visual = OpenCLIPStyleVisual(clip)


def build_openflamingo(lm: nn.Module,
                       clip: nn.Module,
                       tokenizer,
                       cross_attn_every_n_layers: int = 1,
                       decoder_layers_attr: Optional[str] = None) -> nn.Module:
    """Build OpenFlamingo's ``Flamingo`` as its factory does, offline.

    The steps of ``open_flamingo.create_model_and_transforms`` after loading:
    add ``<|endofchunk|>``, ``<image>`` (and ``<PAD>``) to the tokenizer,
    turn ``lm`` into a FlamingoLM (``extend_instance``), resize its token
    embeddings to the extended tokenizer, wrap everything in ``Flamingo``
    and freeze all but the perceiver, the cross-attention and the input
    embeddings. ``lm`` and ``tokenizer`` are modified in place.

    Args:
        lm (nn.Module): A ``transformers`` causal LM.
        clip (nn.Module): A ``transformers`` ``CLIPVisionModel``.
        tokenizer: The LM's tokenizer, without the Flamingo tokens.
        cross_attn_every_n_layers (int): Defaults to 1.
        decoder_layers_attr (str, optional): Dotted path of the decoder
            layers; inferred by OpenFlamingo's own table when None.

    Returns:
        nn.Module: OpenFlamingo's ``Flamingo``, in eval mode.
    """
    from open_flamingo.src.factory import _infer_decoder_layers_attr_name
    from open_flamingo.src.flamingo import Flamingo
    from open_flamingo.src.flamingo_lm import FlamingoLMMixin
    from open_flamingo.src.utils import extend_instance

    tokenizer.add_special_tokens(
        {'additional_special_tokens': ['<|endofchunk|>', '<image>']})
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({'pad_token': '<PAD>'})
    # the LM's names in transformers 4, found before extend_instance gives
    # it a class that transformers does not know
    legacy_lm_names = legacy_key_renamer(lm, reverse=True)
    extend_instance(lm, FlamingoLMMixin)
    lm.set_decoder_layers_attr_name(
        decoder_layers_attr or _infer_decoder_layers_attr_name(lm))
    lm.resize_token_embeddings(len(tokenizer))
    model = Flamingo(
        _VisionTower(clip),
        lm,
        tokenizer.encode('<|endofchunk|>')[-1],
        tokenizer.encode('<image>')[-1],
        vis_dim=clip.config.hidden_size,
        cross_attn_every_n_layers=cross_attn_every_n_layers)
    # for openflamingo_trainable_state_dict
    model.legacy_lm_names = legacy_lm_names
    model.requires_grad_(False)
    model.perceiver.requires_grad_(True)
    model.lang_encoder.gated_cross_attn_layers.requires_grad_(True)
    model.lang_encoder.get_input_embeddings().requires_grad_(True)
    return model.eval()


@torch.no_grad()
def randomise_openflamingo(model: nn.Module,
                           seed: int = 0,
                           gate_range: Tuple[float, float] = (0.5, 1.0),
                           norm_std: float = 0.2) -> None:
    """Give OpenFlamingo's trained parts values a trained model could have.

    Freshly built, the gates are 0 (the images change nothing) and every
    LayerNorm is the identity (swapped norms would go unnoticed). Gates are
    drawn from ``gate_range`` and LayerNorm weights and biases around 1 and
    0; the linear layers and latents keep their random initialisation.

    Args:
        model (nn.Module): From :func:`build_openflamingo`.
        seed (int): Seed of the draws. Defaults to 0.
        gate_range (tuple[float, float]): Range of the gates.
            Defaults to (0.5, 1.0).
        norm_std (float): Spread of the LayerNorm parameters.
            Defaults to 0.2.
    """
    generator = torch.Generator().manual_seed(seed)
    low, high = gate_range
    trained = [model.perceiver, model.lang_encoder.gated_cross_attn_layers]
    for part in trained:
        for name, param in part.named_parameters():
            if name.endswith('_gate'):
                draw = torch.rand(param.shape, generator=generator)
                param.copy_(low + (high - low) * draw)
        for module in part.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.copy_(
                    1 + norm_std *
                    torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(
                    norm_std *
                    torch.randn(module.bias.shape, generator=generator))


def openflamingo_trainable_state_dict(model: nn.Module) -> dict:
    """The state dict OpenFlamingo's training saves.

    Same rule as ``filter_state_dict_to_trainable`` of OpenFlamingo's
    ``train_utils``: drop frozen parameters unless their name contains
    ``embed`` (so the new token rows survive), and the copies under
    ``old_decoder_blocks``, ``gated_cross_attn_layers`` and the vision
    encoder. A frozen untied output head is dropped with its new rows unless
    its name contains ``embed`` (GPT-NeoX's ``embed_out`` survives, LLaMA's
    ``lm_head`` does not).
    """
    # the LM's parameters by the names OpenFlamingo's transformers (4.x)
    # gave them, which its filter saw and its released checkpoints hold
    to_legacy = getattr(model, 'legacy_lm_names', None)

    def legacy(name: str) -> str:
        prefix = 'lang_encoder.'
        if to_legacy is None or not name.startswith(prefix):
            return name
        return prefix + to_legacy(name[len(prefix):])

    state_dict = {legacy(k): v for k, v in model.state_dict().items()}
    for name, param in model.named_parameters():
        name = legacy(name)
        if not param.requires_grad and 'embed' not in name:
            state_dict.pop(name, None)
    duplicates = ('lang_encoder.old_decoder_blocks',
                  'lang_encoder.gated_cross_attn_layers', 'vision_encoder')
    return {
        key: value
        for key, value in state_dict.items()
        if not any(part in key for part in duplicates)
    }


def save_openflamingo_checkpoint(model: nn.Module,
                                 path: str,
                                 training: bool = False) -> str:
    """Save ``model`` as OpenFlamingo does.

    Args:
        model (nn.Module): OpenFlamingo's ``Flamingo``.
        path (str): The ``.pt`` file to write.
        training (bool): Save a training checkpoint
            (``{'epoch', 'model_state_dict'}``) rather than the flat state
            dict released on the hub. Defaults to False.

    Returns:
        str: ``path``.
    """
    state_dict = openflamingo_trainable_state_dict(model)
    if training:
        state_dict = dict(epoch=0, model_state_dict=state_dict)
    torch.save(state_dict, path)
    return path


def _mmflamingo_config(tokenizer_dir: str, clip_dir: str, lm_dir: str,
                       cross_attn_every_n_layers: int,
                       checkpoint: str) -> dict:
    """Our ``Flamingo`` with OpenFlamingo's fixed sizes (its defaults)."""
    return dict(
        type='Flamingo',
        tokenizer=dict(pretrained=tokenizer_dir),
        backbone=dict(type='HFCLIPVisionEncoder', pretrained=clip_dir),
        neck=dict(
            type='PerceiverResampler',
            depth=6,
            dim_head=64,
            heads=8,
            num_latents=64),
        head=dict(
            type='FlamingoLMHead',
            lm=dict(pretrained=lm_dir),
            cross_attn_every_n_layers=cross_attn_every_n_layers,
            xattn_placement='openflamingo',
            xattn_cfg=dict(dim_head=64, heads=8, ff_mult=4, act='gelu')),
        checkpoint=checkpoint)


def build_openflamingo_pair(lm_type: str,
                            tmpdir: str,
                            hidden_size: int = 64,
                            num_layers: int = 2,
                            cross_attn_every_n_layers: int = 1,
                            vision_width: int = 32,
                            vision_layers: int = 2,
                            image_size: int = 32,
                            patch_size: int = 8,
                            init_std: float = 0.1,
                            lm_overrides: Optional[dict] = None,
                            decoder_layers_attr: Optional[str] = None,
                            seed: int = 0):
    """Build OpenFlamingo and our ``Flamingo`` holding the same weights.

    Writes the tiny tokenizer, LM and CLIP to ``tmpdir`` with
    ``save_pretrained``, builds OpenFlamingo from them, randomises its
    trained parts (:func:`randomise_openflamingo`), saves them as
    OpenFlamingo does, converts that file with
    :func:`convert_openflamingo_state_dict` and builds our model from the
    same directories with the converted ``checkpoint``. Both are float32, on
    the CPU, in eval mode.

    ``tmpdir`` then holds ``tokenizer/``, ``lm/`` and ``clip/``
    (``save_pretrained``), ``openflamingo_checkpoint.pt`` (as OpenFlamingo
    saves it) and ``mmflamingo_checkpoint.pth`` (converted).

    LLaMA is built with tied embeddings: OpenFlamingo's checkpoints drop an
    untied LLaMA ``lm_head`` (frozen, no ``embed`` in its name) together
    with the rows ``resize_token_embeddings`` gave it, so an untied LLaMA
    cannot round-trip. GPT-NeoX covers the untied case (``embed_out``).

    Args:
        lm_type (str): A key of ``TINY_LM_CONFIGS`` (``'llama'``,
            ``'gpt_neox'``, ``'opt'``, ``'mpt'``...).
        tmpdir (str): Directory for the saved parts and checkpoints.
        hidden_size (int): LM hidden size. Defaults to 64.
        num_layers (int): LM decoder layers. Defaults to 2.
        cross_attn_every_n_layers (int): Defaults to 1.
        vision_width (int): CLIP hidden size (and perceiver width).
            Defaults to 32.
        vision_layers (int): CLIP blocks. Defaults to 2.
        image_size (int): Input resolution. Defaults to 32.
        patch_size (int): CLIP patch size. Defaults to 8.
        init_std (float): Standard deviation of the LM's initialisation.
            Larger than the usual 0.02 so that logits are spread out and
            greedy and beam search are not decided by rounding.
            Defaults to 0.1.
        lm_overrides (dict, optional): Extra LM config kwargs.
        decoder_layers_attr (str, optional): Dotted path of the decoder
            layers, for LMs OpenFlamingo's table does not know (GPT-2:
            ``'transformer.h'``). Defaults to None.
        seed (int): Seed of every random weight. Defaults to 0.

    Returns:
        tuple: ``(of_model, mm_model, tokenizer)``; the tokenizer is
        OpenFlamingo's, with the Flamingo tokens added (the same ids as
        ``mm_model.tokenizer``).
    """
    from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer,
                              CLIPVisionConfig, CLIPVisionModel)

    import mmflamingo.models  # noqa: F401  (registers the model classes)
    from mmflamingo.models.utils.openflamingo import (
        convert_openflamingo_state_dict, read_openflamingo_checkpoint)
    from mmflamingo.registry import MODELS

    os.makedirs(tmpdir, exist_ok=True)
    dirs = {
        name: osp.join(tmpdir, name)
        for name in ('tokenizer', 'lm', 'clip')
    }
    build_tiny_tokenizer(dirs['tokenizer'])
    tokenizer = AutoTokenizer.from_pretrained(dirs['tokenizer'])

    lm_cfg = tiny_lm_config(
        lm_type,
        hidden_size=hidden_size,
        num_layers=num_layers,
        vocab_size=len(tokenizer))
    lm_cfg['initializer_range' if lm_type != 'opt' else 'init_std'] = init_std
    if lm_type == 'llama':
        lm_cfg['tie_word_embeddings'] = True
    lm_cfg.update(lm_overrides or {})
    torch.manual_seed(seed)
    lm = AutoModelForCausalLM.from_config(
        AutoConfig.for_model(lm_cfg.pop('model_type'), **lm_cfg))
    lm.eval().save_pretrained(dirs['lm'])
    clip = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=vision_width,
            intermediate_size=2 * vision_width,
            num_hidden_layers=vision_layers,
            num_attention_heads=max(1, vision_width // 16),
            image_size=image_size,
            patch_size=patch_size))
    clip.eval().save_pretrained(dirs['clip'])

    of_model = build_openflamingo(lm, clip, tokenizer,
                                  cross_attn_every_n_layers,
                                  decoder_layers_attr)
    randomise_openflamingo(of_model, seed=seed)
    of_checkpoint = save_openflamingo_checkpoint(
        of_model, osp.join(tmpdir, 'openflamingo_checkpoint.pt'))
    converted = osp.join(tmpdir, 'mmflamingo_checkpoint.pth')
    torch.save(
        convert_openflamingo_state_dict(
            read_openflamingo_checkpoint(of_checkpoint)), converted)

    mm_model = MODELS.build(
        _mmflamingo_config(dirs['tokenizer'], dirs['clip'], dirs['lm'],
                           cross_attn_every_n_layers, converted))
    return of_model, mm_model.eval(), tokenizer


def openflamingo_image_processor(image_size: int):
    """OpenCLIP's eval preprocessing at ``image_size``, as OpenFlamingo's
    ``create_model_and_transforms`` returns it (bicubic resize, centre crop,
    CLIP's normalisation)."""
    from torchvision import transforms

    from mmflamingo.models.data_preprocessor import CLIP_MEAN, CLIP_STD
    return transforms.Compose([
        transforms.Resize(
            image_size, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
        transforms.Normalize([m / 255 for m in CLIP_MEAN],
                             [s / 255 for s in CLIP_STD]),
    ])


def openflamingo_vision_x(batch_images: List[list],
                          image_processor) -> torch.Tensor:
    """``EvalModel._prepare_images`` of OpenFlamingo's evaluation: every
    image of every prompt preprocessed, ``(B, N, 1, C, H, W)``, zeros where
    a prompt has fewer than N images."""
    per_example = max(len(images) for images in batch_images)
    vision_x = None
    for i, images in enumerate(batch_images):
        for j, image in enumerate(images):
            pixels = image_processor(image.convert('RGB'))
            if vision_x is None:
                vision_x = torch.zeros(
                    (len(batch_images), per_example, 1) + pixels.shape,
                    dtype=pixels.dtype)
            vision_x[i, j, 0] = pixels
    return vision_x


@torch.no_grad()
def openflamingo_rank_classifications(
        model: nn.Module,
        tokenizer,
        batch_text: List[str],
        vision_x: torch.Tensor,
        class_names: List[str],
        normalize_length: bool = True) -> torch.Tensor:
    """OpenFlamingo's class-name ranking with its KV cache.

    ``EvalModel.get_rank_classifications(..., use_cache=True)`` of
    ``open_flamingo/eval/models/open_flamingo.py`` (OpenFlamingo 2.0.1; the
    pip package lacks that module) with its ``__call__``, restated step by
    step: cache the media, run the prompt once with ``use_cache=True``, then
    for every class name feed its tokens one at a time after the prompt's
    cache, concatenate the prompt's logits with the name's, take the
    log-softmax of all of them and average (``normalize_length``, as its
    classification evaluation does) or sum the name's token log-probs.

    Two changes, neither of which changes its cost:

    - the name's tokens get the prompt's attention mask (OpenFlamingo passes
      none, so with left-padded prompts a name attends to the padding,
      which changes the scores of all but the longest prompt of a batch);
    - each name starts from a copy of the prompt's cache: with
      ``transformers`` >= 4.36 the cache is an object that every call
      extends in place, where OpenFlamingo's transformers had tuples (both
      concatenate the new keys to copies).

    Args:
        model (nn.Module): OpenFlamingo's ``Flamingo``.
        tokenizer: Its tokenizer (left padding is set here).
        batch_text (list[str]): The B prompts.
        vision_x (Tensor): ``(B, N, 1, C, H, W)`` preprocessed images.
        class_names (list[str]): The C names.
        normalize_length (bool): Mean (True) or sum of the name's token
            log-probs. Defaults to True.

    Returns:
        Tensor: ``(B, C)`` log-likelihoods.
    """
    tokenizer.padding_side = 'left'
    encodings = tokenizer(
        batch_text,
        padding='longest',
        truncation=True,
        return_tensors='pt',
        max_length=2000)
    ctx_input_ids = encodings['input_ids']
    ctx_attention_mask = encodings['attention_mask'].bool()
    model.cache_media(input_ids=ctx_input_ids, vision_x=vision_x)
    precomputed = model(
        vision_x=None,
        lang_x=ctx_input_ids,
        attention_mask=ctx_attention_mask,
        clear_conditioned_layers=False,
        use_cache=True)
    precomputed_logits = precomputed.logits
    precomputed_pkvs = precomputed.past_key_values
    overall_probs = []
    for class_name in class_names:
        classname_tokens = tokenizer(
            class_name, add_special_tokens=False,
            return_tensors='pt')['input_ids']
        classname_tokens = classname_tokens.repeat(len(batch_text), 1)
        num_tokens_in_classname = classname_tokens.shape[1]
        # EvalModel.__call__ with a cache: one token per forward
        past_key_values = _fresh_cache(precomputed_pkvs)
        attention_mask, logits = ctx_attention_mask, []
        for token_idx in range(num_tokens_in_classname):
            attention_mask = torch.cat(
                (attention_mask, attention_mask.new_ones(len(batch_text), 1)),
                dim=1)
            outputs = model(
                vision_x=None,
                lang_x=classname_tokens[:, token_idx].reshape((-1, 1)),
                attention_mask=attention_mask,
                clear_conditioned_layers=False,
                past_key_values=past_key_values,
                use_cache=True)
            past_key_values = outputs.past_key_values
            logits.append(outputs.logits)
        logits = torch.cat(
            [precomputed_logits, torch.cat(logits, dim=1)], dim=1)
        logprobs = torch.log_softmax(logits, dim=-1)
        gen_probs = logprobs[:, -num_tokens_in_classname - 1:-1, :]
        gen_probs = torch.gather(gen_probs, 2,
                                 classname_tokens[:, :, None]).squeeze(-1)
        if normalize_length:
            class_prob = torch.mean(gen_probs, dim=1)
        else:
            class_prob = torch.sum(gen_probs, dim=1)
        overall_probs.append(class_prob)
    model.uncache_media()
    return torch.vstack(overall_probs).T.cpu()  # (B, C)


def _fresh_cache(cache):
    """A copy of ``cache`` for one class name (a tuple as is)."""
    if isinstance(cache, tuple):
        return cache
    return copy.deepcopy(cache)
