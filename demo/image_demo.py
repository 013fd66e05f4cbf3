"""Caption an image, or answer a question about it, 0-shot.

Example:
    python demo/image_demo.py demo/demo_shapes.png
    python demo/image_demo.py demo/demo_shapes.png \
        --question 'What color is the circle?'
    python demo/image_demo.py IMAGE --config CONFIG --checkpoint WEIGHTS

Without --model or --config, the shapes models of the model index are used
(flamingo-tiny_shapes_vqa for a question, else flamingo-tiny_shapes_caption);
their weights are made by `bash tools/run_shapes_recipe.sh`.
"""
import argparse

from mmengine.config import DictAction
from mmengine.runner import set_random_seed

from mmflamingo.apis import inference_model, init_model


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image', help='image file')
    model = parser.add_mutually_exclusive_group()
    model.add_argument('--model', help='model name (see model-index.yml)')
    model.add_argument('--config', help='model config file')
    parser.add_argument('--checkpoint', help='trained weights')
    parser.add_argument('--question', help='answer it instead of captioning')
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
    task = 'vqa' if args.question else 'caption'
    cfg_options = dict(args.cfg_options or {})
    if args.config and args.question:
        cfg_options['model.task'] = 'vqa'
    model = init_model(
        args.model or args.config or f'flamingo-tiny_shapes_{task}',
        args.checkpoint,
        device=args.device,
        cfg_options=cfg_options)
    overrides = {} if args.max_new_tokens is None else dict(
        max_new_tokens=args.max_new_tokens)
    result = inference_model(
        model, args.image, question=args.question, **overrides)
    print(f'prompt: {result.text}')
    if args.question:
        print(f'answer: {result.pred_answer}')
    else:
        print(f'caption: {result.pred_caption}')


if __name__ == '__main__':
    main()
