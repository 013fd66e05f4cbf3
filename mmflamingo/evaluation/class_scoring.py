"""Closed-ended few-shot classification: rank class names by likelihood.

Each query's prompt ends where a class name goes; the model's ``score``
gives every candidate name's log-likelihood after it. The prompt runs once
per query and all its candidates (hundreds of class names, or the query's
own ``multiple_choices``) are scored against that one prefix, a chunk of
``candidate_batch_size`` names per LM call (see
:meth:`~mmflamingo.models.heads.FlamingoLMHead.score`). With
``num_permutations`` > 1 the same demos are scored in that many distinct
orders (:func:`~mmflamingo.evaluation.demo_selection.demo_orders`, the first
being the selector's) and the scores averaged: OpenFlamingo's prompt
ensembling.
"""
from typing import List, Optional, Sequence, Union

import torch

from .demo_selection import demo_orders
from .fewshot_settings import FewShotSettings
from .media_cache import VisualTokenCache
from .model_inputs import pack_inputs
from .prompts import FewShotPromptBuilder

__all__ = ['score_class_names', 'classify_batch']


def score_class_names(model,
                      pipeline,
                      prompts: Sequence[str],
                      media: Sequence[list],
                      class_names: Union[Sequence[str],
                                         Sequence[Sequence[str]]],
                      candidate_batch_size: int,
                      cache: Optional[VisualTokenCache] = None,
                      reduction: str = 'sum') -> torch.Tensor:
    """The log-likelihood of every class name after each prompt.

    Args:
        model (nn.Module): A Flamingo.
        pipeline (Callable): Packs ``dict(media=..., text=...)``.
        prompts (Sequence[str]): The B prompts, ending where a name goes.
        media (Sequence[list]): The media of each prompt.
        class_names (Sequence[str] | Sequence[Sequence[str]]): The C
            candidate names of every prompt, or the names of each prompt
            (C: the most any prompt has).
        candidate_batch_size (int): Names per LM call.
        cache (VisualTokenCache, optional): See
            :func:`~mmflamingo.evaluation.model_inputs.pack_inputs`.
        reduction (str): ``'sum'`` or ``'mean'`` of a name's token
            log-probabilities. Defaults to ``'sum'``.

    Returns:
        Tensor: ``(B, C)`` scores; ``-inf`` after a prompt's last name.
    """
    if class_names and isinstance(class_names[0], str):
        class_names = [class_names] * len(prompts)
    data = pack_inputs(model, pipeline, prompts, media, cache)
    for sample, names in zip(data['data_samples'], class_names):
        sample.candidates = list(names)
    scored = model.score(
        **data, reduction=reduction, chunk_size=candidate_batch_size)
    num = max(len(names) for names in class_names)
    scores = torch.full((len(prompts), num), -float('inf'))
    for row, sample in zip(scores, scored):
        row[:len(sample.pred_scores)] = sample.pred_scores
    return scores


def classify_batch(model, pipeline, settings: FewShotSettings,
                   builder: FewShotPromptBuilder, selector,
                   support: Sequence[dict], queries: Sequence[dict],
                   batch: Sequence[int], num_shots: int, trial: int,
                   class_names: Optional[List[str]],
                   cache: Optional[VisualTokenCache]) -> torch.Tensor:
    """``(B, C)`` class scores of a batch of queries, averaged over the
    demo orders.

    Args:
        model (nn.Module): A Flamingo.
        pipeline (Callable): Packs ``dict(media=..., text=...)``.
        settings (FewShotSettings): The run's settings.
        builder (FewShotPromptBuilder): Formats the prompts.
        selector: The trial's demo selector.
        support (Sequence[dict]): The support samples.
        queries (Sequence[dict]): The query samples.
        batch (Sequence[int]): The indices of the batch's queries.
        num_shots (int): The shot count.
        trial (int): The trial index (seeds the demo orders).
        class_names (list[str], optional): The names ranked for queries
            without ``multiple_choices``.
        cache (VisualTokenCache, optional): The visual-token cache.
    """
    demos, orders = [], []
    for i in batch:
        indices = selector.select(i, builder.num_demos(num_shots))
        demos.append(indices)
        # a seed per query, so a query's orders do not depend on its batch
        orders.append(
            demo_orders(
                len(indices),
                settings.num_permutations,
                seed=[settings.trial_seed(trial), i]))
    # the text each name is scored as: after the prompt's last character
    names = [[
        settings.candidate_prefix + name
        for name in queries[i].get('multiple_choices', class_names)
    ] for i in batch]
    scores = []
    for p in range(len(orders[0])):
        prompts, media = [], []
        for i, indices, query_orders in zip(batch, demos, orders):
            prompt, m = builder.build(
                queries[i], [support[indices[j]] for j in query_orders[p]],
                num_shots)
            prompts.append(prompt)
            media.append(m)
        scores.append(
            score_class_names(model, pipeline, prompts, media, names,
                              settings.candidate_batch_size, cache,
                              settings.score_reduction))
    return torch.stack(scores).mean(0)  # (P, B, C) -> (B, C)
