"""Time few-shot captioning generation: mmflamingo against OpenFlamingo.

Both models hold the same weights (OpenFlamingo's are saved the way it saves
them and converted with our converter), get the same prompts, generate the
same number of tokens with the same beam search, and must produce the same
tokens. Runs alternate between the two after a warm-up of each; the medians
are compared. OpenFlamingo (``open-flamingo==2.0.1``) must be installed.

Example:
    python tools/analysis/benchmark_generate.py --repeats 3
"""
import argparse
import random
import tempfile

import torch

from mmflamingo.testing.openflamingo import build_openflamingo_pair
from mmflamingo.testing.timing import alternate

WORDS = ('a red circle next to a blue square on a white table with two '
         'yellow stars above the green triangle and a cat').split()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--lm-type', default='llama')
    parser.add_argument('--hidden-size', type=int, default=512)
    parser.add_argument('--num-layers', type=int, default=8)
    parser.add_argument('--cross-attn-every', type=int, default=1)
    parser.add_argument('--vision-width', type=int, default=256)
    parser.add_argument('--vision-layers', type=int, default=4)
    parser.add_argument('--image-size', type=int, default=112)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument(
        '--shots',
        type=int,
        default=4,
        help='demos per prompt (images = shots + 1)')
    parser.add_argument('--num-beams', type=int, default=3)
    parser.add_argument('--new-tokens', type=int, default=20)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2)
    return parser.parse_args()


def make_prompts(batch_size: int, shots: int, seed: int = 0):
    """4-shot captioning prompts in OpenFlamingo's format, uneven lengths."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(batch_size):
        demos = ''.join('<image>Output:' +
                        ' '.join(rng.choices(WORDS, k=rng.randint(4, 12))) +
                        '.<|endofchunk|>' for _ in range(shots))
        prompts.append(demos + '<image>Output:')
    return prompts


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmpdir:
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
    tokenizer.padding_side = 'left'
    text = tokenizer(
        make_prompts(args.batch_size, args.shots),
        padding='longest',
        return_tensors='pt')
    num_images = args.shots + 1
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(
        args.batch_size,
        num_images,
        1,
        3,
        args.image_size,
        args.image_size,
        generator=generator)
    media_id = tokenizer.convert_tokens_to_ids('<image>')
    gen = dict(
        num_beams=args.num_beams,
        max_new_tokens=args.new_tokens,
        min_new_tokens=args.new_tokens,
        suppress_tokens=[media_id])

    def run_openflamingo():
        with torch.no_grad():
            return of_model.generate(images, text['input_ids'],
                                     text['attention_mask'], **gen)

    def run_mmflamingo():
        with torch.no_grad():
            media = mm_model.extract_media(images)
            return mm_model.head.generate(text['input_ids'],
                                          text['attention_mask'], media, **gen)

    mm_time, of_time, mm_out, of_out = alternate(run_mmflamingo,
                                                 run_openflamingo,
                                                 args.repeats)
    prompt_len = text['input_ids'].shape[1]
    same = torch.equal(mm_out[:, prompt_len:], of_out[:, prompt_len:])
    print(f'config: {args.lm_type} hidden {args.hidden_size} x '
          f'{args.num_layers} layers (xattn every {args.cross_attn_every}), '
          f'ViT {args.vision_width} x {args.vision_layers} at '
          f'{args.image_size}px, batch {args.batch_size}, {num_images} '
          f'images per prompt, prompt length {prompt_len}, beam '
          f'{args.num_beams}, {args.new_tokens} new tokens, '
          f'{torch.get_num_threads()} threads')
    print(f'OpenFlamingo: {of_time:.2f} s   mmflamingo: {mm_time:.2f} s   '
          f'speed-up: {of_time / mm_time:.2f}x   (median of '
          f'{args.repeats})')
    print(f'identical tokens: {same}')
    if not same:
        raise SystemExit('the two models generated different tokens')


if __name__ == '__main__':
    main()
