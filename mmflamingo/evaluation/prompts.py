"""Few-shot prompts: demonstrations then the query, as OpenFlamingo builds
them.

A prompt is the demos, each formatted with ``demo_template`` and followed by
``separator``, then the query formatted with ``query_template``::

    <image>Output:A cat.<|endofchunk|>\\n<image>Output:A dog.<|endofchunk|>\\n
    <image>Output:

(one string; the break is only for reading).

The default templates (:data:`PROMPT_TEMPLATES`) are the strings of
OpenFlamingo's evaluation (``get_{caption,vqa,imagenet,hateful_memes}_prompt``
of ``open_flamingo/eval/models/open_flamingo.py`` and the joins of
``open_flamingo/eval/evaluate.py``):

- a demo ends with ``<|endofchunk|>``; the query has the same text with an
  empty answer and no ``<|endofchunk|>``, so it ends right after the colon
  (``Output:``, ``Short answer:``, ``Answer:``), with no trailing space;
- captioning and VQA put ``'\\n'`` after every demo (the last one included);
  classification (ImageNet, HatefulMemes) joins its demos with ``''``;
- OpenFlamingo's ImageNet prompt is ``<image>Output:{class_name}``, not the
  paper's "A photo of a" phrasing.

Templates are ``str.format`` strings over a sample's fields (see
:mod:`mmflamingo.datasets.eval_datasets`) plus ``answer``, the answer of a VQA
demo chosen from its ``answers``, so a config can change any of them.

**Zero shots.** Following the Flamingo paper, a 0-shot prompt has two
text-only demos: their text without the ``<image>`` marker and without their
images, then the query with its image. For captioning and VQA this is exactly
OpenFlamingo's prompt. For classification OpenFlamingo removes the demos'
markers but still passes their images, so its only ``<image>`` marker (the
query's) is bound to the first demo's image; here only the query's image is
passed, and the query's text sees the query's image.
"""
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mmflamingo.tokens import MEDIA_TOKEN

__all__ = [
    'PROMPT_TEMPLATES', 'FewShotPromptBuilder', 'build_query_prompt',
    'select_answer'
]

# task -> (demo template, query template, separator after each demo)
PROMPT_TEMPLATES: Dict[str, Dict[str, str]] = {
    'caption':
    dict(
        demo_template='<image>Output:{caption}<|endofchunk|>',
        query_template='<image>Output:',
        separator='\n'),
    'vqa':
    dict(
        demo_template='<image>Question:{question} Short answer:{answer}'
        '<|endofchunk|>',
        query_template='<image>Question:{question} Short answer:',
        separator='\n'),
    'imagenet':
    dict(
        demo_template='<image>Output:{class_name}<|endofchunk|>',
        query_template='<image>Output:',
        separator=''),
    'hateful_memes':
    dict(
        demo_template="<image>is an image with: '{text}' written on it. "
        'Is it hateful? Answer:{class_name}<|endofchunk|>',
        query_template="<image>is an image with: '{text}' written on it. "
        'Is it hateful? Answer:',
        separator=''),
}

# the number of text-only demos of a 0-shot prompt (Flamingo, OpenFlamingo)
ZERO_SHOT_DEMOS = 2


def select_answer(answers: Sequence[str], mode: str = 'first') -> str:
    """The answer a VQA demo shows, out of its annotators' answers.

    Args:
        answers (Sequence[str]): The annotators' answers, in order.
        mode (str): ``'first'``: the first annotator's (OpenFlamingo);
            ``'most_common'``: the most frequent, ties going to the one
            given first. Defaults to ``'first'``.

    Returns:
        str: The chosen answer.
    """
    if not answers:
        raise ValueError('a VQA demo needs at least one answer')
    if mode == 'first':
        return answers[0]
    if mode == 'most_common':
        # Counter keeps first-seen order, and most_common is a stable sort
        return Counter(answers).most_common(1)[0][0]
    raise ValueError(
        f"answer mode must be 'first' or 'most_common', got {mode!r}")


class FewShotPromptBuilder:
    """Builds the interleaved prompt and media list of one few-shot query.

    Args:
        task (str, optional): A key of :data:`PROMPT_TEMPLATES` giving the
            default templates (``'caption'``, ``'vqa'``, ``'imagenet'``,
            ``'hateful_memes'``). Defaults to None (then both templates must
            be given).
        demo_template (str, optional): ``str.format`` template of a demo.
            Defaults to the task's.
        query_template (str, optional): Template of the query. Defaults to
            the task's.
        separator (str, optional): Text after every demo. Defaults to the
            task's, else ``''``.
        answer_mode (str): How a VQA demo's ``answer`` is chosen from its
            ``answers``: ``'first'`` (OpenFlamingo) or ``'most_common'``.
            Defaults to ``'first'``.
        zero_shot_demos (int): The number of text-only demos of a 0-shot
            prompt. Defaults to 2 (the paper).

    Example:
        >>> builder = FewShotPromptBuilder('caption')
        >>> demo = dict(caption='A cat.', media=['cat.jpg'])
        >>> builder.build(dict(media=['q.jpg']), [demo], num_shots=1)
        ('<image>Output:A cat.<|endofchunk|>\\n<image>Output:', ['cat.jpg', 'q.jpg'])
    """  # noqa: E501

    def __init__(self,
                 task: Optional[str] = None,
                 demo_template: Optional[str] = None,
                 query_template: Optional[str] = None,
                 separator: Optional[str] = None,
                 answer_mode: str = 'first',
                 zero_shot_demos: int = ZERO_SHOT_DEMOS) -> None:
        if task is not None and task not in PROMPT_TEMPLATES:
            raise KeyError(f'unknown prompt task {task!r}; expected one of '
                           f'{sorted(PROMPT_TEMPLATES)}')
        defaults = PROMPT_TEMPLATES.get(task, {})
        self.demo_template = demo_template or defaults.get('demo_template')
        self.query_template = query_template or defaults.get('query_template')
        if self.demo_template is None or self.query_template is None:
            raise ValueError('give a task or both demo_template and '
                             'query_template')
        self.separator = (
            separator if separator is not None else defaults.get(
                'separator', ''))
        select_answer(['-'], answer_mode)  # fail early on a bad mode
        self.answer_mode = answer_mode
        self.zero_shot_demos = zero_shot_demos

    def num_demos(self, num_shots: int) -> int:
        """How many demos a ``num_shots`` prompt takes (0 shots: the
        text-only ones)."""
        return num_shots if num_shots > 0 else self.zero_shot_demos

    def _fields(self, sample: Dict[str, Any], demo: bool) -> Dict[str, Any]:
        fields = dict(sample)
        if demo and 'caption' in fields:
            fields['caption'] = fields['caption'].strip()
        if demo and 'answer' not in fields and fields.get('answers'):
            fields['answer'] = select_answer(fields['answers'],
                                             self.answer_mode)
        return fields

    def format_demo(self,
                    sample: Dict[str, Any],
                    text_only: bool = False) -> str:
        """One demo's text (without the separator).

        Args:
            sample (dict): The demo's fields (``caption``, ``question`` and
                ``answers``, ``class_name``, ...).
            text_only (bool): Drop the ``<image>`` marker (0-shot demos).
                Defaults to False.
        """
        template = self.demo_template
        if text_only:
            template = template.replace(MEDIA_TOKEN, '')
        try:
            return template.format(**self._fields(sample, demo=True))
        except KeyError as error:
            raise KeyError(f'demo template {self.demo_template!r} needs the '
                           f'field {error}, which the sample lacks') from None

    def format_query(self, sample: Dict[str, Any]) -> str:
        """The query's text: the demo's with an empty answer, no
        ``<|endofchunk|>``."""
        try:
            return self.query_template.format(
                **self._fields(sample, demo=False))
        except KeyError as error:
            raise KeyError(
                f'query template {self.query_template!r} needs '
                f'the field {error}, which the sample lacks') from None

    def build(self, query: Dict[str, Any], demos: Sequence[Dict[str, Any]],
              num_shots: int) -> Tuple[str, List[Any]]:
        """The prompt of ``query`` after ``demos``, and its media.

        Args:
            query (dict): The query sample; its ``media`` (a list of image
                paths) come last.
            demos (Sequence[dict]): :meth:`num_demos` ``(num_shots)`` demo
                samples, in prompt order.
            num_shots (int): The shot count; 0 makes the demos text-only.

        Returns:
            tuple[str, list]: The prompt, and the media in marker order: the
            demos' (none for 0 shots), then the query's.
        """
        if len(demos) != self.num_demos(num_shots):
            raise ValueError(f'a {num_shots}-shot prompt takes '
                             f'{self.num_demos(num_shots)} demos, got '
                             f'{len(demos)}')
        text_only = num_shots == 0
        prompt = ''.join(
            self.format_demo(demo, text_only) + self.separator
            for demo in demos) + self.format_query(query)
        media: List[Any] = []
        if not text_only:
            for demo in demos:
                media.extend(demo['media'])
        media.extend(query['media'])
        return prompt, media


def build_query_prompt(builder: FewShotPromptBuilder, selector,
                       support: Sequence[dict], query: dict, query_index: int,
                       num_shots: int) -> Tuple[str, List[Any], List[int]]:
    """The prompt, media and demo indices of one query.

    Args:
        builder (FewShotPromptBuilder): Formats the prompt.
        selector: Picks the demos (``select(query_index, num_demos)``).
        support (Sequence[dict]): The support samples (data infos).
        query (dict): The query sample.
        query_index (int): Its index in the query set.
        num_shots (int): The shot count.

    Returns:
        tuple[str, list, list[int]]: The prompt, its media and the support
        indices of its demos.
    """
    demo_indices = selector.select(query_index, builder.num_demos(num_shots))
    demos = [support[i] for i in demo_indices]
    prompt, media = builder.build(query, demos, num_shots)
    return prompt, media, demo_indices
