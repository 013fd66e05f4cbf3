"""Few-shot prompting: images interleaved with text, one continuation.

Example:
    python demo/fewshot_demo.py CONFIG \
        --media a.png b.png c.png \
        --prompt '<image>Output: a cat.<|endofchunk|><image>Output: a dog.<|endofchunk|><image>Output:'
"""  # noqa: E501
import argparse

from mmengine.config import DictAction
from mmengine.runner import set_random_seed

from mmflamingo.apis import inference_model, init_model


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='model config file')
    parser.add_argument('--checkpoint', help='trained weights')
    parser.add_argument(
        '--media',
        nargs='+',
        required=True,
        help='one image per <image> marker of the prompt, in order')
    parser.add_argument('--prompt', required=True, help='interleaved prompt')
    parser.add_argument('--num-beams', type=int, help='override beams')
    parser.add_argument(
        '--max-new-tokens', type=int, help='override generated length')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='seed for randomly initialised parts')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. model.tokenizer.pretrained=DIR')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    set_random_seed(args.seed)
    model = init_model(
        args.config,
        args.checkpoint,
        device=args.device,
        cfg_options=args.cfg_options)
    overrides = {
        k: v
        for k, v in dict(
            num_beams=args.num_beams,
            max_new_tokens=args.max_new_tokens).items() if v is not None
    }
    result = inference_model(model, args.media, args.prompt, **overrides)
    text = result.get('pred_caption', result.get('pred_answer'))
    print(f'prompt: {args.prompt}')
    print(f'generated: {text}')


if __name__ == '__main__':
    main()
