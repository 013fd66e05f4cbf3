"""VQA accuracy, exactly as the official VQA evaluation computes it.

The official evaluation is the VQA team's ``vqaEval.py`` (GT-Vision-Lab/VQA,
Python 2); published VQAv2, OK-VQA, VizWiz and TextVQA accuracies were
computed with it, so :func:`vqa_accuracy` reproduces it question by
question, quirks included:

1. Newlines and tabs of the prediction and of every annotator answer become
   spaces and the ends are stripped.
2. Only when these answers are not all identical are the answers and the
   prediction normalised (:func:`normalize_vqa_answer`). When they are all
   identical nothing is, so 'Yes' or 'yes.' does not match ten 'yes'.
3. Leave-one-out: for each answer record (a dict of the annotation, e.g.
   VQAv2's ``{answer, answer_confidence, answer_id}``), the other records
   are those that differ from it as dicts, over all their keys, after step
   2; the record's accuracy is ``min(1, #others whose answer equals the
   prediction / 3)``, and the question's is the mean over its records. With
   an ``answer_id`` in every record this leaves out one annotator: 0, 1, 2,
   3, 4+ matches of 10 give 0, 0.3, 0.6, 0.9, 1. Without one (VizWiz) every
   record identical to it is left out, so ten identical records score 0
   whatever the prediction.
4. The accuracy of a set of questions (and of each answer type) is 100 x
   the mean, rounded to 2 decimals (:func:`summarize_vqa_accuracy`).

The model's generations are cut into answers before they reach the metric
(``test_cfg.answer_postprocess``,
:mod:`mmflamingo.evaluation.answer_postprocess`); the metric scores exactly
the strings it is given.
"""
import os.path as osp
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Dict, List, Optional, Sequence, Union

import mmengine
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmflamingo.registry import METRICS

__all__ = [
    'VQAAccuracy', 'normalize_vqa_answer', 'round_half_away',
    'summarize_vqa_accuracy', 'vqa_accuracy'
]

# Punctuation the official script removes or turns into spaces. The period is
# not among them: it has its own rule (kept before a digit, as in '2.5').
_PUNCTUATION = (';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\',
                '_', '-', '>', '<', '@', '`', ',', '?', '!')
# The official patterns are compiled without flags and Python 2's ``\d``
# then matches only ASCII digits (Python 3's matches any Unicode digit).
# A comma between two digits ('1,000'): if the text has one, punctuation is
# deleted everywhere instead of becoming spaces, so '1,000' reads '1000'.
_COMMA_IN_NUMBER = re.compile(r'(\d)(,)(\d)', re.ASCII)
# A period not followed by a digit ('yes.' -> 'yes', '2.5' stays). The
# official pattern opens with a negative lookahead for '<=' and a digit, which
# always holds (a lookbehind was meant), so a period after a digit goes too
# ('5.' -> '5').
_PERIOD = re.compile(r'\.(?!\d)', re.ASCII)
# The official script hands the flag re.UNICODE (32) to sub() where its count
# goes: at most 32 periods are removed.
_MAX_PERIODS_REMOVED = 32
# A question's answers: the annotation's records, or answer strings.
AnswerRecords = Sequence[Union[dict, str]]
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


def _clean(text: str) -> str:
    """Newlines and tabs to spaces, ends stripped (done to every answer)."""
    return text.replace('\n', ' ').replace('\t', ' ').strip()


def _process_punctuation(text: str) -> str:
    out = text
    # every rule looks at the text as it came, not as the rules leave it
    delete_all = _COMMA_IN_NUMBER.search(text) is not None
    for p in _PUNCTUATION:
        if delete_all or p + ' ' in text or ' ' + p in text:
            out = out.replace(p, '')
        else:
            out = out.replace(p, ' ')
    return _PERIOD.sub('', out, count=_MAX_PERIODS_REMOVED)


def _process_digit_article(text: str) -> str:
    words = [_NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [_CONTRACTIONS.get(w, w) for w in words if w not in _ARTICLES]
    return ' '.join(words)


def normalize_vqa_answer(answer: str) -> str:
    """Normalise an answer as the official VQA evaluation does.

    :func:`vqa_accuracy` applies it only to the questions whose answers are
    not all identical. In order:

    - newlines and tabs become spaces and the ends are stripped;
    - punctuation (not the period or the apostrophe) is deleted when it
      touches a space or when the text has a comma between digits
      ('1,000' -> '1000'), and otherwise becomes a space ('black-white' ->
      'black white'); these tests look at the text as it came, not as the
      earlier replacements left it ('x;-y z-w' -> 'x y z w');
    - the first 32 periods not followed by a digit are deleted ('yes.' ->
      'yes', '2.5' and '.5' stay, '5.' -> '5'); the others stay;
    - the text is lowercased and split into words; number words up to
      'ten' become digits ('two' -> '2', also 'none' -> '0'); the articles
      'a', 'an', 'the' are dropped; contractions written without their
      apostrophe are restored ('dont' -> "don't"; the table's capitalised
      keys such as 'Im' never match).

    Args:
        answer (str): A predicted or an annotator answer.

    Returns:
        str: The normalised answer, words joined by single spaces.
    """
    return _process_digit_article(_process_punctuation(_clean(answer)))


def _answer_records(gt_answers: AnswerRecords) -> List[dict]:
    """Copies of the records; an answer string is a record with an id."""
    if isinstance(gt_answers, str) or not gt_answers:
        raise ValueError("the VQA accuracy needs the list of the annotators' "
                         f'answers, got {gt_answers!r}')
    records = []
    for i, answer in enumerate(gt_answers):
        if isinstance(answer, str):
            answer = dict(answer=answer, answer_id=i + 1)
        if not isinstance(answer, dict) or not isinstance(
                answer.get('answer'), str):
            raise ValueError('an answer record must be a string or a dict '
                             f'with a string "answer", got {answer!r}')
        records.append(dict(answer))
    return records


def vqa_accuracy(pred_answer: str, gt_answers: AnswerRecords) -> float:
    """The official VQA accuracy of one prediction, in [0, 1].

    Steps 1-3 of the module documentation, on copies of the records (the
    official script normalises the annotation in place).

    Args:
        pred_answer (str): The predicted answer, scored as given (no
            post-processing of generations).
        gt_answers (Sequence[dict | str]): The question's answer records as
            the annotation file has them, each a dict with an ``answer``:
            ``{answer, answer_confidence, answer_id}`` in VQAv2 (one record
            left out per record), ``{answer, answer_confidence}`` in VizWiz
            (the identical records left out together). A string stands for
            a record of its own, as if it had an ``answer_id``.

    Returns:
        float: The accuracy of the prediction. A question with a single
        record scores 0, as in the official script (nobody else agrees).
    """
    records = _answer_records(gt_answers)
    for record in records:
        record['answer'] = _clean(record['answer'])
    pred = _clean(pred_answer)
    if len({record['answer'] for record in records}) > 1:
        for record in records:
            record['answer'] = normalize_vqa_answer(record['answer'])
        pred = normalize_vqa_answer(pred)
    accs = []
    for record in records:
        others = [other for other in records if other != record]
        matches = sum(other['answer'] == pred for other in others)
        accs.append(min(1., matches / 3))
    return sum(accs) / len(accs)


def round_half_away(value: float, ndigits: int = 2) -> float:
    """``round`` as Python 2 does it, which the official script runs on.

    The exact binary value of ``value`` is rounded to ``ndigits`` decimals,
    halves away from zero: 3.125 -> 3.13 (Python 3's ``round`` gives 3.12,
    halves to even), 2.675 -> 2.67 (the float is 2.67499...).

    Args:
        value (float): The number to round.
        ndigits (int): The decimals kept. Defaults to 2.

    Returns:
        float: The rounded number.
    """
    return float(
        Decimal(value).quantize(Decimal(1).scaleb(-ndigits), ROUND_HALF_UP))


def summarize_vqa_accuracy(
    accuracies: Sequence[float],
    answer_types: Optional[Sequence[Optional[str]]] = None
) -> Dict[str, float]:
    """The accuracy of a set of questions, as the official script reports.

    Args:
        accuracies (Sequence[float]): The :func:`vqa_accuracy` of every
            question, in [0, 1].
        answer_types (Sequence[str | None], optional): The answer type of
            every question (e.g. 'yes/no', 'number', 'other' in VQAv2), None
            where unknown. Defaults to None.

    Returns:
        dict[str, float]: ``accuracy``, 100 x the mean over the questions,
        and ``accuracy/<answer_type>``, 100 x the mean over the questions of
        that type (types in sorted order), each rounded to 2 decimals with
        :func:`round_half_away`.
    """
    if not accuracies:
        raise ValueError('no questions to compute the VQA accuracy of')

    def percent(accs: Sequence[float]) -> float:
        # summed in question order and then divided, as the official script
        return round_half_away(100 * sum(accs) / len(accs))

    metrics = {'accuracy': percent(accuracies)}
    per_type: Dict[str, List[float]] = {}
    for acc, answer_type in zip(accuracies, answer_types or []):
        if answer_type is not None:
            per_type.setdefault(answer_type, []).append(acc)
    for answer_type, accs in sorted(per_type.items()):
        metrics[f'accuracy/{answer_type}'] = percent(accs)
    return metrics


# Options the metric had before generations were post-processed by the
# few-shot runner, and where they went.
_REMOVED_OPTIONS = {
    'postprocess': "test_cfg.answer_postprocess ('openflamingo' by "
    'default, None for none)',
    'stem_answers': "test_cfg.answer_postprocess='openflamingo_okvqa'",
}


@METRICS.register_module()
class VQAAccuracy(BaseMetric):
    """The official VQA accuracy (VQAv2, OK-VQA, VizWiz, TextVQA), x100.

    Each data sample needs:

    - ``pred_answer`` (str): the answer, scored exactly as given: the
      few-shot runner cuts the generations first
      (``test_cfg.answer_postprocess``).
    - ``gt_answer`` (list[dict] or list[str]): the question's answer
      records (see :func:`vqa_accuracy`): the annotation's dicts, which
      the few-shot runner passes (``VQADataset``'s ``answer_records``), or
      answer strings, each then a record of its own as with VQAv2's
      ``answer_id``. For OK-VQA, its stemmed ``answer`` (not
      ``raw_answer``). Not needed with ``format_only``.
    - ``question_id`` (int): needed with ``format_only`` only.
    - ``answer_type`` (str, optional): e.g. 'yes/no', 'number', 'other' in
      VQAv2; when given, the accuracy of each type is reported too.

    Reports ``accuracy`` (and ``accuracy/<answer_type>``), in percent,
    rounded to 2 decimals as the official script does
    (:func:`summarize_vqa_accuracy`). After :meth:`compute_metrics`,
    ``sample_scores['accuracy']`` holds each question's accuracy in percent
    (unrounded; their mean is ``accuracy``), for confidence intervals.

    Args:
        format_only (bool): Only write the answers to
            ``{outfile_prefix}.json`` in the format of the VQAv2 test server
            (EvalAI) and of ``tools/analysis/vqa_eval.py``,
            ``[{"question_id": int, "answer": str}]``, and report nothing.
            Defaults to False.
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
                 format_only: bool = False,
                 outfile_prefix: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 **removed) -> None:
        for key in removed:
            if key not in _REMOVED_OPTIONS:
                raise TypeError(
                    f'VQAAccuracy got an unexpected argument {key!r}')
            raise TypeError(
                f'VQAAccuracy no longer takes {key!r}: the metric scores the '
                'answers as given, and the few-shot runner post-processes '
                f'the generations; use {_REMOVED_OPTIONS[key]}')
        super().__init__(collect_device=collect_device, prefix=prefix)
        if format_only and outfile_prefix is None:
            raise ValueError('VQAAccuracy: format_only=True needs an '
                             'outfile_prefix to write the answers to')
        self.format_only = format_only
        self.outfile_prefix = outfile_prefix

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep the answer (and answer records) of each sample of a batch.

        Args:
            data_batch: The batch from the dataloader (unused).
            data_samples (Sequence[dict]): The model's outputs, as dicts.
        """
        for sample in data_samples:
            result = dict(
                pred_answer=sample['pred_answer'],
                question_id=sample.get('question_id'))
            if not self.format_only:
                if 'gt_answer' not in sample:
                    raise KeyError('VQAAccuracy: the data sample of question '
                                   f"{result['question_id']} has no "
                                   "'gt_answer' (the annotators' answers)")
                try:
                    _answer_records(sample['gt_answer'])
                except ValueError as error:
                    raise ValueError(
                        f"VQAAccuracy: gt_answer of question "
                        f"{result['question_id']}: {error}") from None
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
        self.sample_scores = {'accuracy': [100 * acc for acc in accs]}
        return summarize_vqa_accuracy(accs,
                                      [r['answer_type'] for r in results])

    def _dump(self, results: List[dict]) -> None:
        missing = [r for r in results if r['question_id'] is None]
        if missing:
            raise KeyError(f'VQAAccuracy: {len(missing)} data samples have '
                           "no 'question_id', needed to write the answers")
        # ids may come as numpy or torch integers, which json cannot write
        answers = [
            dict(
                question_id=r['question_id'] if isinstance(
                    r['question_id'], str) else int(r['question_id']),
                answer=r['pred_answer']) for r in results
        ]
        path = f'{self.outfile_prefix}.json'
        mmengine.mkdir_or_exist(osp.dirname(osp.abspath(path)))
        mmengine.dump(answers, path)
        print_log(f'VQA answers written to {path}', logger='current')
