"""The words of the shapes world: captions, questions, answers, names.

One convention holds in every text of the world, whether a training document,
the language model's corpus or an evaluation prompt: whatever follows a
colon (a caption after ``Output:``, an answer after ``Short answer:``) starts
with a space, so a word is the same token wherever it appears (``' red'`` in
a caption and after ``Short answer:``, ``' kazu'`` in every episode).

Captions name the shapes in the scene's canonical order (left to right, then
top to bottom); the first of an image's five references is the canonical
phrasing, the one few-shot demos show, and the others vary it (sizes or
positions left out, "there is", a count) so that CIDEr rewards the right
content in the right words. Questions ask about colour, shape, count,
position and existence.

**Answer styles.** A document answers its questions in one of two styles,
``'short'`` (``' 2'``, ``' left'``, the VQA benchmark's) or ``'long'``
(``' two'``, ``' on the left'``), chosen per document, as web pages differ;
the benchmark's conventions are then something the demos of a few-shot
prompt teach (one demo of any question type shows the style).

**Names.** The in-context binding task names shape types with invented
words: two consonant-vowel syllables (``kazu``, ``bimo``) that are never a
word used elsewhere in the world, handed out once each by
:class:`NameGenerator`.
"""
import random
import re
from typing import Dict, List, Sequence, Set, Tuple

from .scenes import COLOURS, DIRECTIONS, POSITIONS, SHAPES, SIZES, Scene

POSITION_PHRASES: Dict[str, str] = {
    'left': 'on the left',
    'right': 'on the right',
    'top': 'at the top',
    'bottom': 'at the bottom',
    'center': 'in the center',
}
DIRECTION_PHRASES: Dict[str, str] = {
    'right': 'moves to the right',
    'left': 'moves to the left',
    'up': 'moves up',
    'down': 'moves down',
}
COUNT_WORDS = ('zero', 'one', 'two', 'three')
PLURALS = {'cross': 'crosses'}
# what an annotator may answer instead (the VQA accuracy forgives one)
NEAR_ANSWERS = {
    'center': 'middle',
    'purple': 'violet',
    '0': 'none',
    '1': 'one',
    '2': 'two',
    '3': 'three',
}
NUM_ANSWERS = 10
NEAR_ANSWER_PROB = 0.1
QUESTION_TYPES = ('colour', 'shape', 'count', 'position', 'exists')
ANSWER_STYLES = ('short', 'long')

COLOUR_QUESTION = 'What colour is the {noun}?'
SHAPE_BY_POSITION_QUESTION = 'What shape is {position}?'
SHAPE_BY_COLOUR_QUESTION = 'What shape is the {colour} object?'
COUNT_QUESTION = 'How many shapes are there?'
COUNT_COLOUR_QUESTION = 'How many {colour} shapes are there?'
COUNT_SHAPE_QUESTION = 'How many {plural} are there?'
POSITION_QUESTION = 'Where is the {colour} {shape}?'
EXISTS_QUESTION = 'Is there {article} {colour} {shape}?'
BINDING_QUESTION = 'What is this called?'
SHAPE_QUESTION = 'What shape is this?'
MOTION_QUESTION = 'Which way does the {shape} move?'
QA_SENTENCE = 'Question: {question} Short answer: {answer}'
CAPTION_SENTENCE = 'Output: {caption}'
# the evaluation prompts' templates: the demo's sentence, and the query's,
# which ends where the answer or caption goes
QA_PROMPT = 'Question: {question} Short answer:'
CAPTION_PROMPT = 'Output:'
DESCRIBED_SENTENCE = '{description} {sentence}'
TITLES = ('some pictures of shapes.', 'here are a few shapes.',
          'pictures and what they show.')
THERE_IS = 'there is {caption}'
COUNTED = '{count} {shapes}: {caption}'
VIDEO_CAPTION = '{article} {colour} {shape} {motion}.'
LONG_COLOUR = 'it is {answer}'
LONG_EXISTS = {'yes': 'there is one', 'no': 'there is none'}

CONSONANTS = 'bdfgklmnprstvz'
VOWELS = 'aeiou'

__all__ = [
    'ANSWER_STYLES', 'BINDING_QUESTION', 'NUM_ANSWERS', 'QUESTION_TYPES',
    'SHAPE_QUESTION', 'NameGenerator', 'article', 'binding_sentence',
    'caption_references', 'caption_sentence', 'canonical_caption',
    'document_styles', 'motion_question', 'qa_sentence', 'shape_sentence',
    'styled_answer', 'syllable_words', 'title_sentence', 'tokenize',
    'video_caption', 'vqa_answers', 'vqa_questions', 'world_vocabulary'
]


def tokenize(text: str) -> List[str]:
    """Lower-case words and numbers: Karpathy's ``tokens``."""
    return re.findall(r'[a-z0-9]+', text.lower())


def article(word: str) -> str:
    """``'a'`` or ``'an'``, as English puts it before ``word``."""
    return 'an' if word[0] in 'aeiou' else 'a'


def _plural(shape: str) -> str:
    return PLURALS.get(shape, shape + 's')


def _join(phrases: Sequence[str]) -> str:
    """``'x'``, ``'x and y'``, ``'x, y and z'``."""
    if len(phrases) == 1:
        return phrases[0]
    return ', '.join(phrases[:-1]) + ' and ' + phrases[-1]


def _describe(scene: Scene, size: bool = True, position: bool = True) -> str:
    """The scene's shapes in canonical order, without the final period."""
    phrases = []
    for s in scene:
        words = ([s.size] if size else []) + [s.colour, s.shape]
        phrase = f'{article(words[0])} {" ".join(words)}'
        if position:
            phrase += ' ' + POSITION_PHRASES[s.position]
        phrases.append(phrase)
    return _join(phrases)


def canonical_caption(scene: Scene) -> str:
    """E.g. ``'a large red circle on the left and a small blue square at the
    top.'``: every shape's size, colour, shape and position."""
    return _describe(scene) + '.'


def caption_references(scene: Scene) -> List[str]:
    """The scene's five reference captions, the canonical one first."""
    count = len(scene)
    references = [
        canonical_caption(scene),
        THERE_IS.format(caption=canonical_caption(scene)),
        _describe(scene, size=False) + '.',
        _describe(scene, position=False) + '.',
        COUNTED.format(
            count=COUNT_WORDS[count],
            shapes='shape' if count == 1 else 'shapes',
            caption=_describe(scene, size=False, position=False) + '.'),
    ]
    return references


def _unique(scene: Scene, attribute: str, value: str) -> bool:
    return sum(getattr(s, attribute) == value for s in scene) == 1


def _asked(scene: Scene, rng: random.Random) -> Tuple[str, str]:
    """The colour and shape a count or existence question asks about:
    half the time those of one of the scene's shapes, else random ones."""
    if rng.random() < 0.5:
        asked = rng.choice(scene)
        return asked.colour, asked.shape
    return rng.choice(sorted(COLOURS)), rng.choice(SHAPES)


def vqa_questions(scene: Scene, rng: random.Random,
                  num: int) -> List[Tuple[str, str, str, str]]:
    """``num`` distinct questions about a scene, each with its answer.

    Args:
        scene (Scene): The scene asked about.
        rng (random.Random): The random stream.
        num (int): How many questions (at most the distinct ones possible).

    Returns:
        list[tuple]: ``(question, answer, question_type, answer_type)``;
        the answer is in the short style, the types are
        ``colour``/``shape``/``count``/``position``/``exists`` and VQA's
        ``other``/``number``/``yes/no``.
    """
    candidates = []
    for s in scene:
        noun = s.shape if _unique(scene, 'shape', s.shape) else (
            f'{s.shape} {POSITION_PHRASES[s.position]}')
        candidates.append(
            (COLOUR_QUESTION.format(noun=noun), s.colour, 'colour', 'other'))
        candidates.append((SHAPE_BY_POSITION_QUESTION.format(
            position=POSITION_PHRASES[s.position]), s.shape, 'shape', 'other'))
        if _unique(scene, 'colour', s.colour):
            candidates.append(
                (SHAPE_BY_COLOUR_QUESTION.format(colour=s.colour), s.shape,
                 'shape', 'other'))
        candidates.append(
            (POSITION_QUESTION.format(colour=s.colour, shape=s.shape),
             s.position, 'position', 'other'))
    candidates.append((COUNT_QUESTION, str(len(scene)), 'count', 'number'))
    colour, _ = _asked(scene, rng)
    candidates.append(
        (COUNT_COLOUR_QUESTION.format(colour=colour),
         str(sum(s.colour == colour for s in scene)), 'count', 'number'))
    _, shape = _asked(scene, rng)
    candidates.append(
        (COUNT_SHAPE_QUESTION.format(plural=_plural(shape)),
         str(sum(s.shape == shape for s in scene)), 'count', 'number'))
    colour, shape = _asked(scene, rng)
    present = any((s.colour, s.shape) == (colour, shape) for s in scene)
    candidates.append((EXISTS_QUESTION.format(
        article=article(colour), colour=colour,
        shape=shape), 'yes' if present else 'no', 'exists', 'yes/no'))
    return rng.sample(candidates, min(num, len(candidates)))


def document_styles(rng: random.Random) -> Dict[str, str]:
    """The answer style of each question type in one document: one style,
    drawn once, for all types (a document keeps one convention)."""
    return dict.fromkeys(QUESTION_TYPES, rng.choice(ANSWER_STYLES))


def styled_answer(answer: str, question_type: str, style: str) -> str:
    """A short-style answer in ``style``.

    ``'short'`` leaves it as it is; ``'long'`` gives ``'it is red'``,
    ``'a circle'``, ``'two'``, ``'on the left'``, ``'there is one'`` /
    ``'there is none'``.
    """
    if style not in ANSWER_STYLES:
        raise ValueError(f'style must be one of {ANSWER_STYLES}, got '
                         f'{style!r}')
    if style == 'short':
        return answer
    if question_type == 'colour':
        return LONG_COLOUR.format(answer=answer)
    if question_type == 'shape':
        return f'{article(answer)} {answer}'
    if question_type == 'count':
        return COUNT_WORDS[int(answer)]
    if question_type == 'position':
        return POSITION_PHRASES[answer]
    if question_type == 'exists':
        return LONG_EXISTS[answer]
    raise ValueError(f'unknown question type {question_type!r}')


def vqa_answers(answer: str, rng: random.Random) -> List[str]:
    """Ten annotators' answers: the answer, one maybe a near synonym.

    The first is always the answer itself (the one a few-shot demo shows).
    """
    answers = [answer] * NUM_ANSWERS
    if answer in NEAR_ANSWERS and rng.random() < NEAR_ANSWER_PROB:
        answers[rng.randrange(1, NUM_ANSWERS)] = NEAR_ANSWERS[answer]
    return answers


def qa_sentence(question: str, answer: str) -> str:
    """A question and its answer as the VQA few-shot prompt writes them."""
    return QA_SENTENCE.format(question=question, answer=answer)


def caption_sentence(caption: str) -> str:
    """A caption as the captioning few-shot prompt writes it."""
    return CAPTION_SENTENCE.format(caption=caption)


def title_sentence(rng: random.Random) -> str:
    """A document's opening sentence (no image of its own)."""
    return rng.choice(TITLES)


def binding_sentence(name: str) -> str:
    """``'Question: What is this called? Short answer: kazu'``: how an
    episode names the shape of an image, in its demos and its queries."""
    return qa_sentence(BINDING_QUESTION, name)


def shape_sentence(shape: str) -> str:
    """``'Question: What shape is this? Short answer: circle'``: a
    single-shape image asked its type."""
    return qa_sentence(SHAPE_QUESTION, shape)


def motion_question(shape: str) -> str:
    """``'Which way does the circle move?'``: a video's question, answered
    by a direction (``'left'``, ``'right'``, ``'up'``, ``'down'``)."""
    return MOTION_QUESTION.format(shape=shape)


def video_caption(colour: str, shape: str, direction: str) -> str:
    """E.g. ``'a red circle moves to the right.'``."""
    return VIDEO_CAPTION.format(
        article=article(colour),
        colour=colour,
        shape=shape,
        motion=DIRECTION_PHRASES[direction])


def world_vocabulary() -> Set[str]:
    """Every word the world's text uses (names excepted)."""
    texts = [
        COLOUR_QUESTION, SHAPE_BY_POSITION_QUESTION, SHAPE_BY_COLOUR_QUESTION,
        COUNT_QUESTION, COUNT_COLOUR_QUESTION, COUNT_SHAPE_QUESTION,
        POSITION_QUESTION, EXISTS_QUESTION, BINDING_QUESTION, SHAPE_QUESTION,
        MOTION_QUESTION, QA_SENTENCE, CAPTION_SENTENCE, THERE_IS, COUNTED,
        VIDEO_CAPTION, LONG_COLOUR, *LONG_EXISTS.values(), *TITLES,
        *POSITION_PHRASES.values(), *DIRECTION_PHRASES.values(), *COUNT_WORDS,
        *PLURALS.values(), *NEAR_ANSWERS.values(), *SHAPES, *COLOURS, *SIZES,
        *POSITIONS, *DIRECTIONS, 'a an and shape shapes', 'yes no'
    ]
    words = set()
    for text in texts:
        words.update(tokenize(re.sub(r'\{\w+\}', ' ', text)))
    words.update(_plural(shape) for shape in SHAPES)
    return words


def _syllables() -> List[str]:
    return [c + v for c in CONSONANTS for v in VOWELS]


def syllable_words(rng: random.Random, num: int) -> List[str]:
    """``num`` random three-syllable words (``kazubi``).

    Text for the tokenizer to learn syllables from: a name has two
    syllables, so no name is ever one of these words, and every name, seen
    in training or not, is split into the same kind of pieces.
    """
    syllables = _syllables()
    return [
        ''.join(rng.choice(syllables) for _ in range(3)) for _ in range(num)
    ]


class NameGenerator:
    """Hands out invented names, each at most once.

    A name is two consonant-vowel syllables (``kazu``), the second not
    ending in ``e`` (which makes most English words of this shape: ``tune``,
    ``bone``); names that are words of the world (:func:`world_vocabulary`)
    are never given.

    Args:
        rng (random.Random): The stream that orders the names.
    """

    def __init__(self, rng: random.Random) -> None:
        syllables = _syllables()
        vocabulary = world_vocabulary()
        self._names = [
            a + b for a in syllables for b in syllables
            if b[-1] != 'e' and a + b not in vocabulary
        ]
        rng.shuffle(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def take_all(self) -> List[str]:
        """Every name not given yet."""
        return self.take(len(self))

    def take(self, num: int) -> List[str]:
        """``num`` names never given before.

        Raises:
            RuntimeError: when fewer than ``num`` names are left.
        """
        if num > len(self._names):
            raise RuntimeError(
                f'out of invented names: {num} asked, {len(self._names)} '
                'left')
        names, self._names = self._names[:num], self._names[num:]
        return names
