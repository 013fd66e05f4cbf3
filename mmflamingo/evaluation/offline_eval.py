"""Scoring result files in the official formats, from any system.

What ``tools/analysis/vqa_eval.py`` and ``tools/analysis/caption_eval.py``
run: the VQA files of the official VQA evaluation (GT-Vision-Lab/VQA) and
the COCO caption files of pycocoevalcap, scored by the same functions as the
few-shot metrics (:func:`~mmflamingo.evaluation.metrics.vqa_accuracy`,
:class:`~mmflamingo.evaluation.metrics.CaptionMetric`). The answers and
captions are scored exactly as written (no post-processing of generations).
Every id of the annotations must have exactly one result and every result
an annotation; a malformed file, or an id on one side only, raises
``ValueError`` naming the file and the id.
"""
import json
from typing import Any, Dict, List, Optional

from .metrics.caption import _SCORERS, CaptionMetric
from .metrics.vqa import round_half_away, summarize_vqa_accuracy, vqa_accuracy

__all__ = ['evaluate_caption_files', 'evaluate_vqa_files', 'load_json_file']


def load_json_file(path: str) -> Any:
    """The content of a JSON file; ``ValueError`` naming it if malformed."""
    with open(path, encoding='utf-8') as f:
        try:
            return json.load(f)
        except ValueError as error:
            raise ValueError(f'{path} is not valid JSON ({error})') from None


def _entries(path: str, data: Any, key: Optional[str] = None) -> List[dict]:
    """``data[key]`` (or ``data``) checked to be a list of dicts."""
    if key is not None:
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise ValueError(f'{path} must be a JSON object with a "{key}" '
                             'list')
        data = data[key]
    elif not isinstance(data, list):
        raise ValueError(f'{path} must be a JSON list of objects')
    for i, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ValueError(f'{path}: entry {i} is not a JSON object')
    return data


def _index(path: str, entries: List[dict], id_key: str) -> Dict[Any, dict]:
    """The entries by their ``id_key``, each id once."""
    index = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry.get(id_key), (int, str)):
            raise ValueError(f'{path}: entry {i} has no "{id_key}" (an '
                             'integer or a string)')
        if entry[id_key] in index:
            raise ValueError(
                f'{path}: {id_key} {entry[id_key]!r} appears twice')
        index[entry[id_key]] = entry
    return index


def _check_same_ids(path_a: str, ids_a, path_b: str, ids_b,
                    id_key: str) -> None:
    """Every id of one file is in the other."""
    for path, ids, other_path, other in ((path_a, ids_a, path_b, ids_b),
                                         (path_b, ids_b, path_a, ids_a)):
        missing = [i for i in ids if i not in other]
        if missing:
            raise ValueError(
                f'{other_path} has no entry for {id_key} {missing[0]!r} of '
                f'{path} ({len(missing)} {id_key}s missing)')


def _string(path: str, entry: dict, key: str, id_key: str) -> str:
    if not isinstance(entry.get(key), str):
        raise ValueError(f'{path}: the "{key}" of {id_key} '
                         f'{entry[id_key]!r} must be a string, got '
                         f'{entry.get(key)!r}')
    return entry[key]


def evaluate_vqa_files(question_file: str, annotation_file: str,
                       result_file: str) -> Dict[str, Any]:
    """The official VQA accuracy of a results file.

    Args:
        question_file (str): The questions, ``{"questions": [{"question_id",
            ...}]}`` (e.g. ``v2_OpenEnded_mscoco_val2014_questions.json``);
            with ``"task_type": "Multiple Choice"`` every answer must be one
            of its question's ``multiple_choices``, as the official script
            checks.
        annotation_file (str): The annotations, ``{"annotations":
            [{"question_id", "answers": [{"answer", ...}], "answer_type"
            (optional), ...}]}``, the same questions.
        result_file (str): The answers, ``[{"question_id", "answer"}]``, one
            per question.

    Returns:
        dict: ``metrics``: ``accuracy`` and ``accuracy/<answer_type>`` in
        percent, rounded to 2 decimals (as
        :func:`~mmflamingo.evaluation.metrics.summarize_vqa_accuracy`);
        ``per_question``: ``{question_id: accuracy}`` in 0..100 rounded to 2
        decimals, as the official ``evalQA``, in the annotation's order.
    """
    questions_data = load_json_file(question_file)
    questions = _index(question_file,
                       _entries(question_file, questions_data, 'questions'),
                       'question_id')
    annotations = _index(
        annotation_file,
        _entries(annotation_file, load_json_file(annotation_file),
                 'annotations'), 'question_id')
    results = _index(result_file,
                     _entries(result_file, load_json_file(result_file)),
                     'question_id')
    _check_same_ids(annotation_file, annotations, question_file, questions,
                    'question_id')
    _check_same_ids(annotation_file, annotations, result_file, results,
                    'question_id')
    multiple_choice = questions_data.get('task_type') == 'Multiple Choice'
    accs, answer_types, per_question = [], [], {}
    for qid, ann in annotations.items():
        answer = _string(result_file, results[qid], 'answer', 'question_id')
        if multiple_choice and answer not in questions[qid].get(
                'multiple_choices', []):
            raise ValueError(f'{result_file}: the answer {answer!r} of '
                             f'question_id {qid!r} is not one of its '
                             f'multiple_choices in {question_file}')
        try:
            acc = vqa_accuracy(answer, ann.get('answers'))
        except ValueError as error:
            raise ValueError(f'{annotation_file}: question_id {qid!r}: '
                             f'{error}') from None
        accs.append(acc)
        answer_types.append(ann.get('answer_type'))
        per_question[qid] = round_half_away(100 * acc)
    return dict(
        metrics=summarize_vqa_accuracy(accs, answer_types),
        per_question=per_question)


def evaluate_caption_files(annotation_file: str,
                           result_file: str) -> Dict[str, float]:
    """CIDEr, BLEU-4, METEOR and ROUGE-L of a COCO caption results file.

    Scored as :class:`~mmflamingo.evaluation.metrics.CaptionMetric` does:
    pycocoevalcap's ``PTBTokenizer`` and scorers (Java), never SPICE.

    Args:
        annotation_file (str): The references, ``{"images": [{"id", ...}],
            "annotations": [{"image_id", "caption"}]}``, at least one
            caption per image (e.g. COCO's ``captions_val2014.json``
            restricted to the evaluated images).
        result_file (str): The captions, ``[{"image_id", "caption"}]``, one
            per image.

    Returns:
        dict[str, float]: ``CIDEr``, ``BLEU-4``, ``METEOR``, ``ROUGE-L``, in
        percent (0..100).
    """
    coco = load_json_file(annotation_file)
    images = _index(annotation_file, _entries(annotation_file, coco, 'images'),
                    'id')
    references: Dict[Any, List[str]] = {image_id: [] for image_id in images}
    for i, ann in enumerate(_entries(annotation_file, coco, 'annotations')):
        if ann.get('image_id') not in references:
            raise ValueError(
                f'{annotation_file}: annotation {i} is of image_id '
                f"{ann.get('image_id')!r}, which is not in its images")
        references[ann['image_id']].append(
            _string(annotation_file, ann, 'caption', 'image_id'))
    for image_id, captions in references.items():
        if not captions:
            raise ValueError(f'{annotation_file}: image_id {image_id!r} has '
                             'no caption')
    results = _index(result_file,
                     _entries(result_file, load_json_file(result_file)),
                     'image_id')
    _check_same_ids(annotation_file, references, result_file, results,
                    'image_id')
    metric = CaptionMetric(metrics=_SCORERS, postprocess=False)
    metric.process(None, [
        dict(
            pred_caption=_string(result_file, results[image_id], 'caption',
                                 'image_id'),
            gt_caption=captions,
            image_id=image_id) for image_id, captions in references.items()
    ])
    return metric.compute_metrics(metric.results)
