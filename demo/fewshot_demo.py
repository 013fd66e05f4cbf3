"""Few-shot prompting: captioned demo images, then a query image.

Example:
    python demo/fewshot_demo.py flamingo-tiny_shapes_caption \
        --demos demo/demo_shapes_1.png 'a large red circle.' \
                demo/demo_shapes_2.png 'a small blue square.' \
        --query demo/demo_shapes.png

The prompt is the model config's ``fewshot_prompt`` (the shapes world's:
``<image>Output: {caption}<|endofchunk|>`` per demo, then ``<image>Output:``),
or else OpenFlamingo's captioning prompt. Or give the interleaved prompt and
its media yourself:

    python demo/fewshot_demo.py CONFIG --media a.png b.png c.png \
        --prompt '<image>Output: a cat.<|endofchunk|><image>Output: a dog.<|endofchunk|><image>Output:'

MODEL is a model name (see model-index.yml; weights made by
`bash tools/run_shapes_recipe.sh`) or a config file.
"""  # noqa: E501
import argparse
from typing import List, Optional, Tuple

from mmengine.config import DictAction
from mmengine.runner import set_random_seed

from mmflamingo.apis import inference_model, init_model
from mmflamingo.evaluation import FewShotPromptBuilder


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        'model',
        nargs='?',
        default='flamingo-tiny_shapes_caption',
        help='model name or config file')
    parser.add_argument('--checkpoint', help='trained weights')
    parser.add_argument(
        '--demos',
        nargs='+',
        metavar='IMAGE CAPTION',
        help='demo images, each followed by its caption')
    parser.add_argument('--query', help='the image to caption')
    parser.add_argument(
        '--media',
        nargs='+',
        help='one image per <image> marker of --prompt, in order')
    parser.add_argument('--prompt', help='interleaved prompt')
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
    args = parser.parse_args()
    if (args.media is None) == (args.demos is None):
        parser.error('give either --demos and --query, or --media and '
                     '--prompt')
    if args.demos is not None and (len(args.demos) % 2 or not args.query):
        parser.error('--demos takes IMAGE CAPTION pairs, and --query an '
                     'image')
    if args.media is not None and not args.prompt:
        parser.error('--media needs --prompt')
    return args


def build_prompt(demos: List[str],
                 query: str,
                 prompt: Optional[dict] = None) -> Tuple[str, List[str]]:
    """The captioning prompt of ``IMAGE CAPTION ...`` demos and a query:
    ``prompt`` (the model config's ``fewshot_prompt``, FewShotPromptBuilder
    kwargs) or OpenFlamingo's."""
    samples = [
        dict(media=[image], caption=caption)
        for image, caption in zip(demos[::2], demos[1::2])
    ]
    builder = FewShotPromptBuilder(**prompt) if prompt else \
        FewShotPromptBuilder('caption')
    return builder.build(dict(media=[query]), samples, num_shots=len(samples))


def main() -> None:
    args = parse_args()
    set_random_seed(args.seed)
    model = init_model(
        args.model,
        args.checkpoint,
        device=args.device,
        cfg_options=args.cfg_options)
    if args.demos is not None:
        prompt, media = build_prompt(args.demos, args.query,
                                     model.cfg.get('fewshot_prompt'))
    else:
        prompt, media = args.prompt, args.media
    overrides = {
        k: v
        for k, v in dict(
            num_beams=args.num_beams,
            max_new_tokens=args.max_new_tokens).items() if v is not None
    }
    result = inference_model(model, media, prompt, **overrides)
    text = result.get('pred_caption', result.get('pred_answer'))
    print(f'prompt: {prompt}')
    print(f'generated: {text}')


if __name__ == '__main__':
    main()
