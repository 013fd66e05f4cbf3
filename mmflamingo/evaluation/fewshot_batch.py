"""One batch of few-shot queries: prompts, predictions and what the metrics
read.

:func:`predict_batch` generates (captioning, VQA) and
:func:`~mmflamingo.evaluation.class_scoring.classify_batch` ranks class names
(classification); :func:`to_metric_sample` turns a query and its prediction
into the fields its task's metric reads. VQA generations are cut into
answers first, as ``answer_postprocess`` names
(:mod:`~mmflamingo.evaluation.answer_postprocess`).
"""
from typing import List, Optional, Sequence

from .answer_postprocess import postprocess_answer
from .media_cache import VisualTokenCache
from .model_inputs import pack_inputs
from .prompts import FewShotPromptBuilder, build_query_prompt

__all__ = ['predict_batch', 'to_metric_sample']


def predict_batch(model, pipeline, builder: FewShotPromptBuilder, selector,
                  support: Sequence[dict], queries: Sequence[dict],
                  batch: Sequence[int], num_shots: int,
                  cache: Optional[VisualTokenCache]) -> List:
    """The model's ``predict`` on the prompts of a batch of queries.

    Args:
        model (nn.Module): A Flamingo.
        pipeline (Callable): Packs ``dict(media=..., text=...)``.
        builder (FewShotPromptBuilder): Formats the prompts.
        selector: The trial's demo selector.
        support (Sequence[dict]): The support samples.
        queries (Sequence[dict]): The query samples.
        batch (Sequence[int]): The indices of the batch's queries.
        num_shots (int): The shot count.
        cache (VisualTokenCache, optional): The visual-token cache.

    Returns:
        list[DataSample]: With ``pred_caption`` or ``pred_answer``.
    """
    prompts, media = [], []
    for i in batch:
        prompt, m, _ = build_query_prompt(builder, selector, support,
                                          queries[i], i, num_shots)
        prompts.append(prompt)
        media.append(m)
    return model.predict(**pack_inputs(model, pipeline, prompts, media, cache))


def to_metric_sample(
        task: str,
        query: dict,
        prediction,
        answer_postprocess: Optional[str] = 'openflamingo') -> dict:
    """The fields the task's metric reads, from a query and its prediction.

    Captioning: ``pred_caption``, ``gt_caption`` (the query's ``captions``),
    ``image_id``. VQA: ``pred_answer`` (the generation post-processed as
    ``answer_postprocess`` names, see
    :func:`~mmflamingo.evaluation.answer_postprocess.postprocess_answer`),
    ``gt_answer`` (its ``answer_records``, the annotation's answer dicts,
    else its ``answers``), ``question_id`` and ``answer_type`` when known.
    Classification (``prediction``: the ``(C, )`` class scores):
    ``pred_scores``, ``gt_label`` (its ``label``), ``sample_id``.
    """
    if task == 'classification':
        if 'label' not in query:
            raise KeyError(f"query {query['sample_id']!r} has no 'label' "
                           '(a test split without labels?)')
        if 'multiple_choices' in query:
            prediction = prediction[:len(query['multiple_choices'])]
        return dict(
            pred_scores=prediction,
            gt_label=query['label'],
            sample_id=query['sample_id'])
    if task == 'caption':
        return dict(
            pred_caption=prediction.pred_caption,
            gt_caption=query['captions'],
            image_id=query['image_id'])
    sample = dict(
        pred_answer=postprocess_answer(prediction.pred_answer,
                                       answer_postprocess),
        question_id=query['question_id'])
    if 'answer_records' in query:
        sample['gt_answer'] = query['answer_records']
    elif 'answers' in query:
        sample['gt_answer'] = query['answers']
    if 'answer_type' in query:
        sample['answer_type'] = query['answer_type']
    return sample
