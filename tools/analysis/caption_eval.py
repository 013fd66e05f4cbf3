"""Score captions from any system with the COCO caption metrics.

RESULTS is the COCO caption results format, ``[{"image_id", "caption"}]``
(what ``CaptionMetric(format_only=True)`` writes); ANNOTATIONS the COCO
caption references of the same images, ``{"images": [{"id"}],
"annotations": [{"image_id", "caption"}]}``. The captions are scored
exactly as written, by pycocoevalcap's PTBTokenizer and scorers (Java; no
SPICE). Prints CIDEr, BLEU-4, METEOR and ROUGE-L in percent.

Example:
    python tools/analysis/caption_eval.py \\
        data/coco/annotations/captions_karpathy_test.json \\
        work_dirs/coco_captions.json
"""
import argparse
import sys

from mmflamingo.evaluation.offline_eval import evaluate_caption_files


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='COCO caption metrics of a results file')
    parser.add_argument('annotations', help='COCO caption references json')
    parser.add_argument('results', help='[{"image_id", "caption"}] json')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        scores = evaluate_caption_files(args.annotations, args.results)
    # RuntimeError, ImportError: no Java, no pycocoevalcap
    except (OSError, ValueError, RuntimeError, ImportError) as error:
        sys.exit(f'caption_eval.py: {error}')
    for name, value in scores.items():
        print(f'{name}: {value:.2f}')


if __name__ == '__main__':
    main()
