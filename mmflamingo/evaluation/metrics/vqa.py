"""VQA accuracy, computed the way the official VQA evaluation does.

The official VQA accuracy of one prediction is the mean, over the 10
leave-one-annotator-out subsets of the 10 human answers, of
``min(1, #matches in the subset / 3)``. With 2 of 10 matching answers it is
(8 * 2/3 + 2 * 1/3) / 10 = 0.6 (MMPretrain's ``VQAAcc``, which computes
``min(1, matches / 3)`` once, gives 0.667). Before matching, the prediction
and the answers are normalised as the official script does (see
:func:`normalize_vqa_answer`).
"""
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence

import mmengine
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmflamingo.registry import METRICS

__all__ = [
    'VQAAccuracy', 'normalize_vqa_answer', 'postprocess_vqa_generation',
    'stem_vqa_answer', 'vqa_accuracy'
]

# Punctuation the official script removes or turns into spaces. The period is
# not among them: it has its own rule (kept inside numbers such as '2.5').
_PUNCTUATION = (';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\',
                '_', '-', '>', '<', '@', '`', ',', '?', '!')
# A comma between two digits ('1,000'): if the text has one, punctuation is
# deleted everywhere instead of becoming spaces, so '1,000' reads '1000'.
_COMMA_IN_NUMBER = re.compile(r'(\d)(,)(\d)')
# A period not followed by a digit ('yes.' -> 'yes', '2.5' stays).
_PERIOD = re.compile(r'\.(?!\d)')
_ARTICLES = frozenset({'a', 'an', 'the'})
_NUMBER_WORDS = {
    'none': '0',
    'zero': '0',
    'one': '1',
    'two': '2',
    'three': '3',
    'four': '4',
    'five': '5',
    'six': '6',
    'seven': '7',
    'eight': '8',
    'nine': '9',
    'ten': '10',
}
# Contractions written without their apostrophe, and their proper spelling.
# As in the official table, 'somebody'd' maps to 'somebodyd' (the reverse of
# its neighbours) and the capitalised keys never match lowercased text; both
# quirks are kept so that scores match the official ones.
_CONTRACTIONS = {
    'aint': "ain't",
    'arent': "aren't",
    'cant': "can't",
    'couldve': "could've",
    'couldnt': "couldn't",
    "couldn'tve": "couldn't've",
    "couldnt've": "couldn't've",
    'didnt': "didn't",
    'doesnt': "doesn't",
    'dont': "don't",
    'hadnt': "hadn't",
    "hadnt've": "hadn't've",
    "hadn'tve": "hadn't've",
    'hasnt': "hasn't",
    'havent': "haven't",
    'hed': "he'd",
    "hed've": "he'd've",
    "he'dve": "he'd've",
    'hes': "he's",
    'howd': "how'd",
    'howll': "how'll",
    'hows': "how's",
    "Id've": "I'd've",
    "I'dve": "I'd've",
    'Im': "I'm",
    'Ive': "I've",
    'isnt': "isn't",
    'itd': "it'd",
    "itd've": "it'd've",
    "it'dve": "it'd've",
    'itll': "it'll",
    "let's": "let's",
    'maam': "ma'am",
    'mightnt': "mightn't",
    "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've",
    'mightve': "might've",
    'mustnt': "mustn't",
    'mustve': "must've",
    'neednt': "needn't",
    'notve': "not've",
    'oclock': "o'clock",
    'oughtnt': "oughtn't",
    "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at",
    'shant': "shan't",
    "shed've": "she'd've",
    "she'dve": "she'd've",
    "she's": "she's",
    'shouldve': "should've",
    'shouldnt': "shouldn't",
    "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've",
    "somebody'd": 'somebodyd',
    "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've",
    'somebodyll': "somebody'll",
    'somebodys': "somebody's",
    'someoned': "someone'd",
    "someoned've": "someone'd've",
    "someone'dve": "someone'd've",
    'someonell': "someone'll",
    'someones': "someone's",
    'somethingd': "something'd",
    "somethingd've": "something'd've",
    "something'dve": "something'd've",
    'somethingll': "something'll",
    'thats': "that's",
    'thered': "there'd",
    "thered've": "there'd've",
    "there'dve": "there'd've",
    'therere': "there're",
    'theres': "there's",
    'theyd': "they'd",
    "theyd've": "they'd've",
    "they'dve": "they'd've",
    'theyll': "they'll",
    'theyre': "they're",
    'theyve': "they've",
    'twas': "'twas",
    'wasnt': "wasn't",
    "wed've": "we'd've",
    "we'dve": "we'd've",
    'weve': "we've",
    'werent': "weren't",
    'whatll': "what'll",
    'whatre': "what're",
    'whats': "what's",
    'whatve': "what've",
    'whens': "when's",
    'whered': "where'd",
    'wheres': "where's",
    'whereve': "where've",
    'whod': "who'd",
    "whod've": "who'd've",
    "who'dve": "who'd've",
    'wholl': "who'll",
    'whos': "who's",
    'whove': "who've",
    'whyll': "why'll",
    'whyre': "why're",
    'whys': "why's",
    'wont': "won't",
    'wouldve': "would've",
    'wouldnt': "wouldn't",
    "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've",
    'yall': "y'all",
    "yall'll": "y'all'll",
    "y'allll": "y'all'll",
    "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've",
    'youd': "you'd",
    "youd've": "you'd've",
    "you'dve": "you'd've",
    'youll': "you'll",
    'youre': "you're",
    'youve': "you've",
}


def normalize_vqa_answer(answer: str) -> str:
    """Normalise an answer as the official VQA evaluation does.

    In order: newlines and tabs become spaces and the ends are stripped;
    punctuation (not the period) is deleted when it touches a space or when
    the text has a comma between digits ('1,000' -> '1000'), and otherwise
    becomes a space ('black-white' -> 'black white'); periods not followed by
    a digit are deleted ('yes.' -> 'yes', '2.5' stays); the text is lowercased
    and split into words; number words become digits ('two' -> '2', also
    'none' -> '0'); the articles 'a', 'an', 'the' are dropped; contractions
    written without an apostrophe are restored ('dont' -> "don't").

    Args:
        answer (str): A predicted or an annotator answer.

    Returns:
        str: The normalised answer, words joined by single spaces.
    """
    text = answer.replace('\n', ' ').replace('\t', ' ').strip()
    # every punctuation rule looks at the text as it was before any of them
    delete_all = _COMMA_IN_NUMBER.search(text) is not None
    out = text
    for p in _PUNCTUATION:
        if delete_all or p + ' ' in text or ' ' + p in text:
            out = out.replace(p, '')
        else:
            out = out.replace(p, ' ')
    out = _PERIOD.sub('', out)
    words = [_NUMBER_WORDS.get(w, w) for w in out.lower().split()]
    words = [_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES]
    return ' '.join(words)


def vqa_accuracy(pred_answer: str, gt_answers: Sequence[str]) -> float:
    """The official VQA accuracy of one prediction, in [0, 1].

    The mean over the leave-one-annotator-out subsets of ``gt_answers`` of
    ``min(1, #answers in the subset equal to the prediction / 3)``, after
    :func:`normalize_vqa_answer` of the prediction and of every answer. With
    10 answers: 0 matching -> 0, 1 -> 0.3, 2 -> 0.6, 3 -> 0.9 (leaving
    out one of the 3 leaves 2), 4 or more -> 1.

    Args:
        pred_answer (str): The predicted answer.
        gt_answers (Sequence[str]): The annotators' answers (10 in VQAv2,
            OK-VQA, VizWiz and TextVQA).

    Returns:
        float: The accuracy of the prediction.
    """
    if len(gt_answers) < 2:
        raise ValueError('the VQA accuracy needs the answers of several '
                         f'annotators (10 in VQAv2), got {list(gt_answers)}')
    pred = normalize_vqa_answer(pred_answer)
    matches = sum(normalize_vqa_answer(a) == pred for a in gt_answers)
    num = len(gt_answers)
    # leaving out a matching answer leaves matches - 1, another one matches
    acc = (matches * min(1., (matches - 1) / 3) +
           (num - matches) * min(1., matches / 3)) / num
    return acc


def postprocess_vqa_generation(text: str) -> str:
    """Cut a generated answer as OpenFlamingo does for VQA.

    The generation is cut before the first 'Question', 'Answer' or 'Short'
    (the model going on with the next few-shot example), then before the
    first ', ', and stripped: ``' a dog, a cat Question: ...'`` -> ``'a dog'``.

    Args:
        text (str): The text generated after the prompt.

    Returns:
        str: The answer.
    """
    answer = re.split('Question|Answer|Short', text, maxsplit=1)[0]
    return answer.split(', ', 1)[0].strip()


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


@METRICS.register_module()
class VQAAccuracy(BaseMetric):
    """The official VQA accuracy (VQAv2, OK-VQA, VizWiz, TextVQA), x100.

    Each data sample needs:

    - ``pred_answer`` (str): the generated answer, from the model's predict.
    - ``gt_answer`` (list[str]): the annotators' answers, all of them with
      their repetitions (10 in VQAv2). For OK-VQA, its stemmed ``answers``
      (not ``raw_answers``), with ``stem_answers=True``. Not needed with
      ``format_only``.
    - ``question_id`` (int): needed with ``format_only`` only.
    - ``answer_type`` (str, optional): e.g. 'yes/no', 'number', 'other' in
      VQAv2; when given, the accuracy of each type is reported too.

    Reports ``accuracy`` (and ``accuracy/<answer_type>``), in percent: the
    mean over the questions of :func:`vqa_accuracy`.

    Args:
        postprocess (bool): Cut the generations with
            :func:`postprocess_vqa_generation` first. Defaults to True.
        stem_answers (bool): Then stem them with :func:`stem_vqa_answer`, as
            OpenFlamingo does for OK-VQA. Defaults to False.
        format_only (bool): Only write the answers to
            ``{outfile_prefix}.json`` in the format of the VQAv2 test server
            (EvalAI), ``[{"question_id": int, "answer": str}]``, and report
            nothing. Defaults to False.
        outfile_prefix (str, optional): The prefix of the json file, e.g.
            ``'work_dirs/vqav2_test-dev'``. Required with ``format_only``.
            Defaults to None.
        collect_device (str): Device to gather the results of all ranks on,
            'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names, e.g. 'vqav2'.
            Defaults to None.
    """
    default_prefix: Optional[str] = 'vqa'

    def __init__(self,
                 postprocess: bool = True,
                 stem_answers: bool = False,
                 format_only: bool = False,
                 outfile_prefix: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if format_only and outfile_prefix is None:
            raise ValueError('VQAAccuracy: format_only=True needs an '
                             'outfile_prefix to write the answers to')
        self.postprocess = postprocess
        self.stem_answers = stem_answers
        self.format_only = format_only
        self.outfile_prefix = outfile_prefix

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep the answer (and ground truth) of each sample of a batch.

        Args:
            data_batch: The batch from the dataloader (unused).
            data_samples (Sequence[dict]): The model's outputs, as dicts.
        """
        for sample in data_samples:
            answer = sample['pred_answer']
            if self.postprocess:
                answer = postprocess_vqa_generation(answer)
            if self.stem_answers:
                answer = stem_vqa_answer(answer)
            result = dict(
                pred_answer=answer, question_id=sample.get('question_id'))
            if not self.format_only:
                if 'gt_answer' not in sample:
                    raise KeyError('VQAAccuracy: the data sample of question '
                                   f"{sample.get('question_id')} has no "
                                   "'gt_answer' (the annotators' answers)")
                if isinstance(sample['gt_answer'], str):
                    raise TypeError(
                        'VQAAccuracy: gt_answer must be the list of the '
                        "annotators' answers, got the string "
                        f"{sample['gt_answer']!r} for question "
                        f"{sample.get('question_id')}")
                result['gt_answer'] = list(sample['gt_answer'])
                result['answer_type'] = sample.get('answer_type')
            self.results.append(result)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """The accuracy over all questions, or write the answers.

        Args:
            results (list[dict]): What :meth:`process` kept, from all ranks.

        Returns:
            dict[str, float]: ``accuracy`` and ``accuracy/<answer_type>`` in
            percent, or nothing with ``format_only``.
        """
        if self.format_only:
            self._dump(results)
            return {}
        accs = [
            vqa_accuracy(r['pred_answer'], r['gt_answer']) for r in results
        ]
        metrics = {'accuracy': 100 * sum(accs) / len(accs)}
        per_type: Dict[str, List[float]] = {}
        for r, acc in zip(results, accs):
            if r['answer_type'] is not None:
                per_type.setdefault(r['answer_type'], []).append(acc)
        for answer_type, type_accs in sorted(per_type.items()):
            metrics[f'accuracy/{answer_type}'] = (100 * sum(type_accs) /
                                                  len(type_accs))
        return metrics

    def _dump(self, results: List[dict]) -> None:
        missing = [r for r in results if r['question_id'] is None]
        if missing:
            raise KeyError(f'VQAAccuracy: {len(missing)} data samples have '
                           "no 'question_id', needed to write the answers")
        answers = [
            dict(question_id=int(r['question_id']), answer=r['pred_answer'])
            for r in results
        ]
        path = f'{self.outfile_prefix}.json'
        mmengine.mkdir_or_exist(osp.dirname(osp.abspath(path)))
        mmengine.dump(answers, path)
        print_log(f'VQA answers written to {path}', logger='current')
