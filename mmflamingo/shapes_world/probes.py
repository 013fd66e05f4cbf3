"""Probes of the shapes world's language model: is it an in-context learner?

Flamingo's few-shot ability comes from its frozen language model, so the
recipe checks the LM before Flamingo trains on it, on text it never saw:

- :func:`repeat_probe`: the loss on a span of random tokens, and on the
  same span repeated right after it. A model that copies from its context
  (induction heads) gets the repeat nearly free.
- :func:`binding_probe`: text binding episodes whose names (the world's val
  names, held out of all training text) are revealed only by the episode's
  earlier chunks: the accuracy of ranking the episode's names for a last,
  unnamed shape, against chance (1 / the episode's names).
- :func:`reading_probe`: a held-out scene's caption, then a question about
  it: the accuracy of ranking the answers of the question's type, against
  the best constant answer per type.

Scores are summed log-likelihoods of each candidate after the prompt.
"""
import os.path as osp
import random
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from mmflamingo.compat import dtype_kwargs
from .language import (BINDING_QUESTION, QA_PROMPT, NameGenerator,
                       binding_sentence, canonical_caption, vqa_questions)
from .scenes import COLOURS, POSITIONS, SHAPES, Scene, sample_scene, scene_key
from .text_episodes import (binding_episode, described_chunk, load_lm_world,
                            ordinary_token_ids)

__all__ = [
    'ANSWER_CANDIDATES', 'binding_probe', 'held_out_text', 'probe_lm',
    'probe_lm_dir', 'reading_probe', 'repeat_probe', 'score_candidates'
]

# every short-style answer of each question type
ANSWER_CANDIDATES: Dict[str, List[str]] = dict(
    colour=sorted(COLOURS),
    shape=list(SHAPES),
    count=['0', '1', '2', '3'],
    position=sorted(POSITIONS),
    exists=['yes', 'no'])


@torch.no_grad()
def score_candidates(lm,
                     tokenizer,
                     prompts: Sequence[str],
                     candidates: Sequence[Sequence[str]],
                     batch_size: int = 32) -> List[List[float]]:
    """Summed log-likelihood of each candidate after its prompt.

    A candidate is scored as the continuation ``' ' + candidate`` (the
    world's answers follow a colon and a space).

    Args:
        lm (nn.Module): A ``transformers`` causal LM.
        tokenizer: Its tokenizer.
        prompts (Sequence[str]): The prompts.
        candidates (Sequence[Sequence[str]]): The candidates of each prompt.
        batch_size (int): Rows (prompt + one candidate) per forward.
            Defaults to 32.

    Returns:
        list[list[float]]: The scores, per prompt and candidate.
    """
    rows, spans = [], []
    for prompt, cands in zip(prompts, candidates):
        prompt_ids = tokenizer(prompt)['input_ids']
        for cand in cands:
            cand_ids = tokenizer(
                ' ' + cand, add_special_tokens=False)['input_ids']
            rows.append(prompt_ids + cand_ids)
            spans.append((len(prompt_ids), len(cand_ids)))
    scores: List[float] = []
    pad = tokenizer.pad_token_id or 0
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        width = max(len(r) for r in chunk)
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in chunk])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r))
                             for r in chunk])
        logprobs = lm(
            input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        for i, (begin, length) in enumerate(spans[start:start + batch_size]):
            # position t predicts token t + 1
            positions = torch.arange(begin - 1, begin + length - 1)
            targets = ids[i, begin:begin + length]
            scores.append(float(logprobs[i, positions, targets].sum()))
    out, k = [], 0
    for cands in candidates:
        out.append(scores[k:k + len(cands)])
        k += len(cands)
    return out


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


@torch.no_grad()
def repeat_probe(lm,
                 tokenizer,
                 num: int = 32,
                 length: int = 40,
                 seed: int = 0) -> Tuple[float, float]:
    """Mean loss (nats) on ``length`` random tokens, then on their repeat.

    The tokens are drawn uniformly from the tokenizer's ordinary (not
    special) tokens; the first token of each occurrence is left out (its
    loss does not depend on copying).

    Returns:
        tuple[float, float]: The loss on the first occurrence and on the
        repeat.
    """
    rng = random.Random(f'repeat-probe-{seed}')
    vocab = ordinary_token_ids(tokenizer)
    bos = tokenizer.bos_token_id
    rows = []
    for _ in range(num):
        span = [rng.choice(vocab) for _ in range(length)]
        rows.append(([bos] if bos is not None else []) + span + span)
    ids = torch.tensor(rows)
    offset = ids.shape[1] - 2 * length  # the bos, if any
    logits = lm(input_ids=ids).logits[:, :-1].float()
    loss = F.cross_entropy(
        logits.transpose(1, 2), ids[:, 1:], reduction='none')  # (N, S - 1)
    # loss[:, t] is the loss of token t + 1
    first = loss[:, offset:offset + length - 1]
    repeat = loss[:, offset + length:offset + 2 * length - 1]
    return float(first.mean()), float(repeat.mean())


def binding_prompt(demos: Sequence[tuple], query: tuple) -> str:
    """An episode's chunks, then the query's unanswered."""
    text = ''.join(
        described_chunk(description, binding_sentence(name))
        for description, name, _ in demos)
    return (text + f' {query[0]} ' +
            QA_PROMPT.format(question=BINDING_QUESTION))


@torch.no_grad()
def binding_probe(lm,
                  tokenizer,
                  names: Sequence[str],
                  shots: int,
                  num: int = 200,
                  description: str = 'full',
                  seed: int = 0) -> Tuple[float, float, float]:
    """Accuracy of naming a shape from ``shots`` named ones in context.

    Each episode gives 3 or 4 shape types names drawn from ``names``
    (names no training text holds), shows ``shots`` described shapes with
    their names, then asks the name of one more; the episode's names are
    ranked. The query's type is always among the demos' (else no context
    could tell).

    Args:
        lm (nn.Module): The language model.
        tokenizer: Its tokenizer.
        names (Sequence[str]): The names to draw from.
        shots (int): Named shapes before the query.
        num (int): Episodes. Defaults to 200.
        description (str): How shapes are described, as in training
            (:func:`~mmflamingo.shapes_world.text_episodes.describe_shape`).
            Defaults to ``'full'`` (size, colour, type and position).
        seed (int): Seed of the episodes. Defaults to 0.

    Besides chance, the probe reports what picking any name the context
    showed gives (1 / the distinct names of the demos): binding is what
    beats that.

    Returns:
        tuple[float, float, float]: The accuracy, chance and the accuracy
        of picking a name the demos showed, in percent.
    """
    rng = random.Random(f'binding-probe-{seed}')
    prompts, candidates, golds, chance, seen = [], [], [], 0., 0.
    while len(prompts) < num:
        items, episode_names = binding_episode(rng, names, shots + 1,
                                               description)
        *demos, query = items
        if query[2] not in {shape for _, _, shape in demos}:
            continue
        prompts.append(binding_prompt(demos, query))
        candidates.append(episode_names)
        golds.append(episode_names.index(query[1]))
        chance += 1 / len(episode_names)
        seen += 1 / len({name for _, name, _ in demos})
    scores = score_candidates(lm, tokenizer, prompts, candidates)
    correct = sum(_argmax(s) == g for s, g in zip(scores, golds))
    return 100 * correct / num, 100 * chance / num, 100 * seen / num


@torch.no_grad()
def reading_probe(lm,
                  tokenizer,
                  scenes: Sequence[Scene],
                  num: int = 200,
                  seed: int = 0) -> Tuple[float, float]:
    """Accuracy of answering a question about a caption in the context.

    Args:
        lm (nn.Module): The language model.
        tokenizer: Its tokenizer.
        scenes (Sequence[Scene]): Scenes to caption and ask about (held-out
            ones: no training text describes them).
        num (int): Questions. Defaults to 200.
        seed (int): Seed of the questions. Defaults to 0.

    Returns:
        tuple[float, float]: The accuracy, and the accuracy of always
        giving each question type's most frequent answer, in percent.
    """
    rng = random.Random(f'reading-probe-{seed}')
    prompts, candidates, golds, types = [], [], [], []
    for _ in range(num):
        scene = rng.choice(scenes)
        question, answer, qtype, _ = vqa_questions(scene, rng, 1)[0]
        prompts.append(f' {canonical_caption(scene)} ' +
                       QA_PROMPT.format(question=question))
        candidates.append(ANSWER_CANDIDATES[qtype])
        golds.append(ANSWER_CANDIDATES[qtype].index(answer))
        types.append(qtype)
    scores = score_candidates(lm, tokenizer, prompts, candidates)
    correct = sum(_argmax(s) == g for s, g in zip(scores, golds))
    prior = 0
    for qtype in set(types):
        answers = [g for g, t in zip(golds, types) if t == qtype]
        prior += max(answers.count(a) for a in set(answers))
    return 100 * correct / num, 100 * prior / num


def probe_lm(lm,
             tokenizer,
             names: Sequence[str],
             scenes: Sequence[Scene],
             num: int = 200,
             seed: int = 0,
             shots: Sequence[int] = (4, 8),
             descriptions: Optional[Sequence[str]] = None) -> dict:
    """All the probes, as a dict of figures (see the module doc)."""
    first, repeat = repeat_probe(lm, tokenizer, seed=seed)
    results = dict(repeat_first=first, repeat_copy=repeat)
    for description in descriptions or ('word', 'full'):
        for k in shots:
            acc, chance, seen = binding_probe(lm, tokenizer, names, k, num,
                                              description, seed)
            results[f'binding_{description}_{k}shot'] = acc
            results[f'binding_{k}shot_chance'] = chance
            results[f'binding_{k}shot_seen_name'] = seen
    results['reading'], results['reading_prior'] = reading_probe(
        lm, tokenizer, scenes, num, seed)
    return results


def held_out_text(lm_world: dict,
                  num_scenes: int = 500,
                  seed: int = 0) -> Tuple[List[str], List[Scene]]:
    """Names and scenes no training text of ``lm_world`` holds.

    Args:
        lm_world (dict): :func:`~.text_episodes.load_lm_world` of the world
            the LM was trained on.
        num_scenes (int): How many scenes. Defaults to 500.
        seed (int): Seed of the scenes. Defaults to 0.

    Returns:
        tuple[list[str], list[Scene]]: Every invented name the world never
        handed out for training (the val names among them), sorted, and
        random scenes whose content no training scene has.
    """
    trained = set(lm_world['names'])
    names = sorted(set(NameGenerator(random.Random(0)).take_all()) - trained)
    seen = {scene_key(s) for s in lm_world['scenes']}
    rng = random.Random(f'held-out-scenes-{seed}')
    scenes: List[Scene] = []
    while len(scenes) < num_scenes:
        scene = sample_scene(rng)
        if scene_key(scene) not in seen:
            scenes.append(scene)
    return names, scenes


def probe_lm_dir(lm_dir: str,
                 data_root: str,
                 num: int = 200,
                 seed: int = 0) -> dict:
    """:func:`probe_lm` of the LM saved in ``lm_dir``, on text held out of
    the world under ``data_root`` (its ``text/lm_world.json``)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    lm = AutoModelForCausalLM.from_pretrained(
        lm_dir, local_files_only=True, **dtype_kwargs(torch.float32)).eval()
    tokenizer = AutoTokenizer.from_pretrained(lm_dir, local_files_only=True)
    names, scenes = held_out_text(
        load_lm_world(osp.join(data_root, 'text', 'lm_world.json')), seed=seed)
    return probe_lm(lm, tokenizer, names, scenes, num=num, seed=seed)
