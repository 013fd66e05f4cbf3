"""Caption a video, 0-shot.

Example:
    python demo/video_demo.py demo/demo_shapes_video.mp4
    python demo/video_demo.py VIDEO --config CONFIG --checkpoint WEIGHTS

VIDEO is a video file (decoded with PyAV) or a folder of frames. Without
--model or --config, flamingo-tiny_shapes_caption of the model index is used;
its weights are made by `bash tools/run_shapes_recipe.sh`.
"""
import argparse

from mmengine.config import DictAction
from mmengine.runner import set_random_seed

from mmflamingo.apis import inference_model, init_model


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('video', help='video file or folder of frames')
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        '--model',
        default='flamingo-tiny_shapes_caption',
        help='model name (see model-index.yml)')
    model.add_argument('--config', help='model config file')
    parser.add_argument('--checkpoint', help='trained weights')
    parser.add_argument(
        '--num-frames',
        type=int,
        help='frames to sample (default: what the model was trained on)')
    parser.add_argument('--prompt', help='prompt with one <image> marker')
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
        args.config or args.model,
        args.checkpoint,
        device=args.device,
        cfg_options=args.cfg_options)
    overrides = {} if args.max_new_tokens is None else dict(
        max_new_tokens=args.max_new_tokens)
    result = inference_model(
        model,
        args.video,
        args.prompt,
        num_frames=args.num_frames,
        **overrides)
    print(f'prompt: {result.text}')
    print(f'caption: {result.pred_caption}')


if __name__ == '__main__':
    main()
