"""Post-processing of generated VQA answers: the few-shot runner's step.

After ``Short answer:`` a model often goes on with the next few-shot
example, so its generation is cut into an answer before the metric sees it
(:func:`~mmflamingo.evaluation.fewshot_batch.to_metric_sample`), which then
scores exactly that string. ``test_cfg.answer_postprocess`` names the cut:

- ``'openflamingo'`` (the default): OpenFlamingo's
  ``postprocess_vqa_generation``: cut before the first 'Question', 'Answer'
  or 'Short', then before the first ', ', and strip:
  ``' a dog, a cat Question: ...'`` -> ``'a dog'``. The ', ' cut also turns
  'washington, dc' into 'washington'.
- ``'no_comma_cut'``: the same without the ', ' cut:
  ``'washington, dc Question: ...'`` -> ``'washington, dc'``.
- ``'openflamingo_okvqa'``: ``'openflamingo'``, then
  :func:`stem_vqa_answer`, as OpenFlamingo does for OK-VQA (whose
  annotated answers are stemmed).
- ``None``: no post-processing (the model's ``predict`` has stripped the
  generation).
"""
import re
from typing import Optional

__all__ = [
    'ANSWER_POSTPROCESS', 'check_answer_postprocess', 'postprocess_answer',
    'postprocess_vqa_generation', 'stem_vqa_answer'
]

ANSWER_POSTPROCESS = ('openflamingo', 'no_comma_cut', 'openflamingo_okvqa')


def postprocess_vqa_generation(text: str, cut_at_comma: bool = True) -> str:
    """Cut a generated answer as OpenFlamingo does for VQA.

    The generation is cut before the first 'Question', 'Answer' or 'Short'
    (the model going on with the next few-shot example), then before the
    first ', ', and stripped: ``' a dog, a cat Question: ...'`` ->
    ``'a dog'``.

    Args:
        text (str): The text generated after the prompt.
        cut_at_comma (bool): Cut before the first ', ' too. Defaults to True.

    Returns:
        str: The answer.
    """
    answer = re.split('Question|Answer|Short', text, maxsplit=1)[0]
    if cut_at_comma:
        answer = answer.split(', ', 1)[0]
    return answer.strip()


# Stemmer for OK-VQA. Words it must leave alone or map by hand, as
# OpenFlamingo's OK-VQA stemmer does for these common answers.
_STEM_EXCEPTIONS = {
    'yes': 'yes',
    'police': 'police',
    'tennis': 'tennis',
    'christmas': 'christmas',
    'las': 'las',
    'vegas': 'vegas',
    'news': 'news',
    'series': 'series',
    'species': 'species',
    'does': 'does',
    'always': 'always',
    'perhaps': 'perhaps',
    'jeans': 'jean',
    'clothes': 'cloth',
    'clothing': 'cloth',
    'morning': 'morn',
    'buses': 'bus',
    'movies': 'movie',
    'men': 'man',
    'women': 'woman',
    'people': 'person',
    'children': 'child',
    'adding': 'add',
    'dying': 'die',
    'lying': 'lie',
    'tying': 'tie',
}
_VOWELS = frozenset('aeiouy')


def _stem_word(token: str) -> str:
    # punctuation around a word stays ('dogs.' -> 'dog.'), as NLTK's
    # tokenizer splits it off before OpenFlamingo's stemmer sees the word
    lead, word, tail = re.fullmatch(r'(\W*)(.*?)(\W*)', token).groups()
    return lead + _stem_core(word) + tail


def _stem_core(word: str) -> str:
    if word in _STEM_EXCEPTIONS:
        return _STEM_EXCEPTIONS[word]
    if word.endswith("'s"):  # possessive: "domino's" -> 'domino'
        return word[:-2]
    if word.endswith('ing'):
        return _stem_ing(word)
    if word.endswith('s') and len(word) > 3:
        return _singularize(word)
    return word


def _stem_ing(word: str) -> str:
    """'riding' -> 'ride', 'running' -> 'run', 'surfing' -> 'surf'."""
    stem = word[:-3]
    # 'king', 'thing', 'spring': no vowel left, not a verb form
    if len(stem) < 2 or not _VOWELS.intersection(stem):
        return word
    if (len(stem) >= 3 and stem[-1] == stem[-2]
            and stem[-1] in 'bdgmnprt'):  # 'running' -> 'run'
        return stem[:-1]
    if stem.endswith('v'):  # no English verb ends in 'v': 'driving'
        return stem + 'e'
    # one syllable ending in a single vowel and a consonant: 'riding' -> 'ride'
    # but 'eating' -> 'eat', 'opening' -> 'open', 'playing' -> 'play'
    vowel_groups = re.findall('[aeiou]+', stem)
    if (len(vowel_groups) == 1 and len(vowel_groups[0]) == 1
            and stem[-1] not in _VOWELS | set('wx') and stem[-2] in 'aeiou'):
        return stem + 'e'
    return stem


def _singularize(word: str) -> str:
    """'dogs' -> 'dog', 'boxes' -> 'box', 'berries' -> 'berry'."""
    if word.endswith(('ss', 'us', 'is')):  # 'glass', 'cactus', 'tennis'
        return word
    if word.endswith('ies') and len(word) > 4 and word[-4] not in _VOWELS:
        return word[:-3] + 'y'
    if word.endswith(('ches', 'shes', 'sses', 'xes', 'zzes')):
        return word[:-2]
    if word.endswith('oes') and len(word) > 5:  # 'tomatoes', not 'shoes'
        return word[:-2]
    if word.endswith('lves'):  # 'shelves' -> 'shelf'
        return word[:-3] + 'f'
    if word.endswith('eaves'):  # 'leaves' -> 'leaf', but 'waves' -> 'wave'
        return word[:-3] + 'f'
    return word[:-1]


def stem_vqa_answer(answer: str) -> str:
    """Stem an answer for OK-VQA, to the forms of OK-VQA's stemmed answers.

    OK-VQA's ground-truth ``answers`` are stemmed, so OpenFlamingo stems the
    predictions (its ``ok_vqa_utils.py``: a table of hand-made matches, NLTK's
    WordNet verb lemmatizer for words ending in 'ing', and ``inflection``'s
    singularize for the words NLTK's tagger calls plural nouns). NLTK's models
    cannot be downloaded here, so this is a small deterministic stemmer with
    the same effect on common answers, word by word after lowercasing:

    - a table of exceptions ('yes', 'tennis', 'christmas' stay; 'jeans' ->
      'jean', 'clothes' -> 'cloth', 'men' -> 'man', ...);
    - possessives lose their "'s" ("domino's" -> 'domino');
    - 'ing' forms become verbs: 'running' -> 'run', 'riding' -> 'ride',
      'driving' -> 'drive', 'surfing' -> 'surf' ('king', 'string' stay);
    - plurals of 4 letters or more become singular: 'dogs' -> 'dog',
      'boxes' -> 'box', 'berries' -> 'berry', 'tomatoes' -> 'tomato',
      'shelves' -> 'shelf', 'leaves' -> 'leaf' ('glass', 'cactus', 'bus'
      stay).

    Without a part-of-speech tagger, verbs in the third person ('plays')
    are singularized too; such answers are rare in OK-VQA.

    Args:
        answer (str): A predicted answer.

    Returns:
        str: The stemmed answer, words joined by single spaces.
    """
    return ' '.join(_stem_word(w) for w in answer.lower().split())


def check_answer_postprocess(mode: Optional[str]) -> None:
    """Raise ``ValueError`` unless ``mode`` is None or in
    :data:`ANSWER_POSTPROCESS`."""
    if mode is not None and mode not in ANSWER_POSTPROCESS:
        raise ValueError('test_cfg.answer_postprocess must be one of '
                         f'{ANSWER_POSTPROCESS} or None, got {mode!r}')


def postprocess_answer(text: str, mode: Optional[str]) -> str:
    """Post-process a generated answer as ``answer_postprocess`` names.

    Args:
        text (str): The text generated after the prompt.
        mode (str, optional): One of :data:`ANSWER_POSTPROCESS` (see the
            module documentation), or None for the text as it is.

    Returns:
        str: The answer the metric scores.
    """
    check_answer_postprocess(mode)
    if mode is None:
        return text
    answer = postprocess_vqa_generation(
        text, cut_at_comma=mode != 'no_comma_cut')
    return stem_vqa_answer(answer) if mode == 'openflamingo_okvqa' else answer
