"""Score VQA answers from any system as the official VQA evaluation does.

RESULTS is the official results format, ``[{"question_id", "answer"}]``
(what ``VQAAccuracy(format_only=True)`` writes); QUESTIONS and ANNOTATIONS
are the VQA files of the same questions. The answers are scored exactly as
written. Prints the accuracy and the accuracy of each answer type (percent,
2 decimals); ``--out`` writes each question's accuracy (0..100).

Example:
    python tools/analysis/vqa_eval.py \\
        data/vqav2/v2_OpenEnded_mscoco_val2014_questions.json \\
        data/vqav2/v2_mscoco_val2014_annotations.json \\
        work_dirs/vqav2_answers.json --out work_dirs/vqav2_per_question.json
"""
import argparse
import json
import sys

from mmflamingo.evaluation.offline_eval import evaluate_vqa_files


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='The official VQA accuracy of a results file')
    parser.add_argument('questions', help='questions json')
    parser.add_argument('annotations', help='annotations json')
    parser.add_argument('results', help='[{"question_id", "answer"}] json')
    parser.add_argument(
        '--out', help='write {question_id: accuracy} (0..100) here')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        scores = evaluate_vqa_files(args.questions, args.annotations,
                                    args.results)
    except (OSError, ValueError) as error:
        sys.exit(f'vqa_eval.py: {error}')
    for name, value in scores['metrics'].items():
        print(f'{name}: {value:.2f}')
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            json.dump(scores['per_question'], f, indent=1)


if __name__ == '__main__':
    main()
