"""Time Flamingo training steps: mmflamingo against OpenFlamingo.

Both models start from the same weights (OpenFlamingo's, converted), train on
the same interleaved batch (``--images`` images in ``--seq-len`` tokens) with
AdamW and gradient clipping, and report tokens per second. OpenFlamingo's
step is its train loop's: forward with labels, backward, its mask on the
embedding gradient (only ``<image>`` and ``<|endofchunk|>`` rows learn),
clipping, step. Steps alternate between the two models so that a change in
the machine's load hits both. The first step's losses are printed side by
side: both models compute the same loss on the same weights.

Example:
    python tools/analysis/benchmark_train.py --steps 3
"""
import argparse
import os.path as osp
import random
import tempfile

import torch
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmpretrain.structures import DataSample

import mmflamingo.engine  # noqa: F401  (registers the optimizer constructor)
from mmflamingo.models.utils import build_labels
from mmflamingo.testing import build_tiny_tokenizer
from mmflamingo.testing.openflamingo import build_openflamingo_pair
from mmflamingo.testing.timing import alternate


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--lm-type', default='llama')
    parser.add_argument('--hidden-size', type=int, default=512)
    parser.add_argument('--num-layers', type=int, default=8)
    parser.add_argument('--cross-attn-every', type=int, default=2)
    parser.add_argument(
        '--vocab-size',
        type=int,
        default=50280,
        help='tokenizer size, padded with extra tokens (default: that of '
        "OpenFlamingo's LMs, MPT and RedPajama)")
    parser.add_argument('--vision-width', type=int, default=256)
    parser.add_argument('--vision-layers', type=int, default=4)
    parser.add_argument('--image-size', type=int, default=112)
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--seq-len', type=int, default=256)
    parser.add_argument('--images', type=int, default=5)
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--peak-tflops',
        type=float,
        help='the device\'s peak TFLOP/s for the dtype used (fp32 here), '
        'to print model FLOPs utilisation; on a GPU, required for MFU')
    parser.add_argument('--threads', type=int, default=2)
    return parser.parse_args()


def make_tokenizer(directory: str, vocab_size: int) -> None:
    """The tiny BPE tokenizer padded to a realistic vocabulary size."""
    from transformers import AutoTokenizer
    build_tiny_tokenizer(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    extra = vocab_size - len(tokenizer)
    if extra > 0:
        tokenizer.add_tokens([f'<extra_{i}>' for i in range(extra)])
        tokenizer.save_pretrained(directory)


def make_batch(tokenizer, batch_size: int, seq_len: int, num_images: int,
               image_size: int):
    """Interleaved documents of random words, tokenised to ``seq_len``.

    Built as text and then tokenised, so that both models see the same ids
    (ours tokenises the text itself). Every document keeps the same number
    of images after truncation.
    """
    rng = random.Random(0)
    words = [w for w in tokenizer.get_vocab() if w.isalpha()]
    # enough words to fill seq_len, few enough that every image fits in it
    # (a word of this tokenizer is 1-3 tokens, about 2.5 on average)
    chunk_words = round(seq_len / num_images / 2.5)
    texts = [
        ''.join('<image>' + ' '.join(rng.choices(words, k=chunk_words)) +
                '<|endofchunk|>' for _ in range(num_images))
        for _ in range(batch_size)
    ]
    encoded = tokenizer(
        texts,
        max_length=seq_len,
        truncation=True,
        padding='max_length',
        return_tensors='pt')
    media_id = tokenizer.convert_tokens_to_ids('<image>')
    kept = (encoded['input_ids'] == media_id).sum(1)
    if not (kept == num_images).all():
        raise ValueError(f'images cut by truncation ({kept.tolist()}): '
                         'lower --images or raise --seq-len')
    kept = num_images
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(
        batch_size, kept, 1, 3, image_size, image_size, generator=generator)
    return texts, encoded['input_ids'], encoded['attention_mask'], images


def model_flops(model, tokens: int, num_images: int) -> float:
    """Model FLOPs of one training step (the usual accounting).

    Frozen LM: 4N per token (forward, and the backward to its input);
    trained cross-attention blocks: 6N per token (forward, backward to input
    and to weights); trained perceiver: 6N per visual token it reads (patches
    and latents of every image); frozen ViT: 2N per patch (forward only).
    N excludes the input embedding table, which costs no FLOPs.
    """
    head = model.head
    embedding = head.lm.get_input_embeddings()
    frozen_lm = sum(p.numel() for p in head.lm.parameters())
    frozen_lm -= sum(p.numel() for p in embedding.parameters())
    output = head.lm.get_output_embeddings()
    if output is not None and getattr(output, 'tied', False):
        frozen_lm += sum(p.numel() for p in embedding.parameters())
    xattn = sum(p.numel() for p in head.xattn_blocks.parameters())
    perceiver = sum(p.numel() for p in model.neck.parameters())
    vit = sum(p.numel() for p in model.backbone.parameters())
    patches = model.backbone.num_patches + 1
    visual_tokens = num_images * (patches + model.neck.num_latents)
    return (4 * frozen_lm * tokens + 6 * xattn * tokens +
            6 * perceiver * visual_tokens + 2 * vit * num_images * patches)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    init_default_scope('mmflamingo')
    with tempfile.TemporaryDirectory() as tmpdir:
        make_tokenizer(osp.join(tmpdir, 'tokenizer'), args.vocab_size)
        of_model, mm_model, tokenizer = build_openflamingo_pair(
            args.lm_type,
            tmpdir,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            cross_attn_every_n_layers=args.cross_attn_every,
            vision_width=args.vision_width,
            vision_layers=args.vision_layers,
            image_size=args.image_size,
            patch_size=16)
    texts, ids, mask, images = make_batch(tokenizer, args.batch_size,
                                          args.seq_len, args.images,
                                          args.image_size)
    num_images = images.shape[1]
    device = torch.device(args.device)
    of_model.to(device)
    mm_model.to(device)
    ids, mask, images = ids.to(device), mask.to(device), images.to(device)
    media_id = tokenizer.convert_tokens_to_ids('<image>')
    eoc_id = tokenizer.convert_tokens_to_ids('<|endofchunk|>')
    labels = build_labels(ids, mask, media_id, eoc_id)
    optimizer_cfg = dict(type='AdamW', lr=1e-4, weight_decay=0.1)

    # ours: the model's own loss and mmengine's optimizer wrapper
    mm_model.max_text_length = args.seq_len
    mm_model.train()
    mm_wrapper = build_optim_wrapper(
        mm_model,
        dict(
            constructor='TrainableOptimWrapperConstructor',
            optimizer=optimizer_cfg,
            clip_grad=dict(max_norm=1.0)))
    samples = []
    for text in texts:
        sample = DataSample()
        sample.set_field(text, 'text', field_type='metainfo')
        sample.set_field(num_images, 'num_media', field_type='metainfo')
        samples.append(sample)

    def mm_step():
        loss = mm_model.loss(images, samples)['loss']
        mm_wrapper.update_params(loss)
        return loss.item()

    # OpenFlamingo: its train loop's step
    of_model.train()
    of_params = [p for p in of_model.parameters() if p.requires_grad]
    of_optimizer = torch.optim.AdamW(
        of_params, **{
            k: v
            for k, v in optimizer_cfg.items() if k != 'type'
        })
    embedding = of_model.lang_encoder.get_input_embeddings()

    def of_step():
        loss = of_model(images, ids, attention_mask=mask, labels=labels)[0]
        loss.backward()
        keep = torch.zeros_like(embedding.weight.grad)
        keep[[media_id, eoc_id]] = 1
        embedding.weight.grad.mul_(keep)
        torch.nn.utils.clip_grad_norm_(of_params, 1.0)
        of_optimizer.step()
        of_optimizer.zero_grad(set_to_none=True)
        return loss.item()

    mm_time, of_time, mm_loss, of_loss = alternate(mm_step, of_step,
                                                   args.steps)
    tokens = int(mask.sum())
    trainable = sum(p.numel() for p in mm_model.parameters()
                    if p.requires_grad)
    print(f'config: {args.lm_type} hidden {args.hidden_size} x '
          f'{args.num_layers} layers (xattn every {args.cross_attn_every}), '
          f'vocab {len(tokenizer)}, ViT {args.vision_width} x '
          f'{args.vision_layers} at {args.image_size}px, batch '
          f'{args.batch_size} x {args.seq_len} tokens with {num_images} '
          f'images, {torch.get_num_threads()} threads; trainable params: '
          f'mmflamingo {trainable:,}, OpenFlamingo '
          f'{sum(p.numel() for p in of_params):,}')
    print(f'first-step loss: OpenFlamingo {of_loss:.5f}  mmflamingo '
          f'{mm_loss:.5f}')
    print(f'OpenFlamingo: {tokens / of_time:.0f} tokens/s   mmflamingo: '
          f'{tokens / mm_time:.0f} tokens/s   ratio: {of_time / mm_time:.2f}x'
          f'   (median of {args.steps} steps each)')
    flops = model_flops(mm_model, tokens, num_images * args.batch_size)
    line = (f'model FLOPs per step: {flops / 1e12:.3f} T; achieved: '
            f'OpenFlamingo {flops / of_time / 1e12:.4f}, mmflamingo '
            f'{flops / mm_time / 1e12:.4f} TFLOP/s')
    if args.peak_tflops:
        peak = args.peak_tflops * 1e12
        line += (f'; MFU: OpenFlamingo {flops / of_time / peak:.1%}, '
                 f'mmflamingo {flops / mm_time / peak:.1%}')
    print(line)


if __name__ == '__main__':
    main()
