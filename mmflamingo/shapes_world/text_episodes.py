"""The language model's training text: the world told in words.

Flamingo inherits its in-context learning from its frozen language model, so
the shapes world's LM is pretrained on text with the structure of the
evaluation prompts, where a chunk's image is stood in for by its description
(``<image>a small red circle on the left. Question: ...``):

- ``copy``: a span of random tokens repeated until the row is full, the
  plainest in-context task (copying what came before), which gives the
  model induction heads;
- ``binding``: text binding episodes, 6 to 12 described shapes of 3 or 4
  types, each type named by a name drawn for the episode, so that only
  the episode's earlier chunks tell a shape's name; a shape is described
  by its type alone (``binding_description='word'``, the default), or also
  by its colour, or fully (size, colour, type, position): with full or
  mixed descriptions from the start the binding did not form within 1,250
  steps in our trials, with the type alone it formed after about 600;
- ``reading``: a scene's caption and a question about it, answered in the
  document's answer style per question type (the style a document shows
  first is the one it keeps);
- ``caption``: captions (``Output: ...``) of training scenes;
- ``video``: a moving shape described, and asked which way it moves (the
  training videos' combinations of shape, colour and direction only).

Scenes are the world's training scenes and names its training names
(``text/lm_world.json``), so nothing held out is ever read. Every row is
generated from ``(seed, index)`` alone: the dataset is indexable, any sampler
works and resuming is exact.
"""
import json
import random
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

from mmflamingo.registry import DATASETS
from mmflamingo.tokens import END_OF_CHUNK_TOKEN, MEDIA_TOKEN, build_tokenizer
from .language import (article, binding_sentence, canonical_caption,
                       caption_references, caption_sentence, document_styles,
                       motion_question, qa_sentence, shape_sentence,
                       styled_answer, video_caption, vqa_questions)
from .scenes import SHAPES, Scene, Shape, sample_shape

__all__ = [
    'ShapesTextEpisodes', 'binding_episode', 'describe_shape',
    'described_chunk', 'load_lm_world', 'ordinary_token_ids', 'parse_lm_world'
]

EPISODE_TYPES = (3, 4)
# as SHAPE_QUESTION_PROB of the world's writer
SHAPE_QUESTION_PROB = 0.3
EPISODE_ITEMS = (6, 12)
DOC_CHUNKS = (2, 8)
COPY_SPAN = (8, 40)


def ordinary_token_ids(tokenizer) -> List[int]:
    """The ids of ``tokenizer``'s tokens that are not special ones: what
    copy rows (and the copy probe) draw random spans from."""
    specials = set(tokenizer.all_special_ids)
    return [i for i in range(len(tokenizer)) if i not in specials]


def load_lm_world(path: str) -> dict:
    """``text/lm_world.json``, read by :func:`parse_lm_world`."""
    with open(path, encoding='utf-8') as f:
        return parse_lm_world(json.load(f))


def parse_lm_world(world: dict) -> dict:
    """The training scenes (as :class:`Shape` tuples), the training names
    and the training videos' (shape, colour, direction) combinations of an
    ``lm_world`` dict (see :func:`~.writer.lm_world`)."""
    scenes = [
        tuple(Shape(*shape) for shape in scene) for scene in world['scenes']
    ]
    return dict(
        scenes=scenes,
        names=list(world['names']),
        video_combos=[tuple(c) for c in world['video_combos']])


def described_chunk(description: str, sentence: str) -> str:
    """A chunk whose image is stood in for by its description, where the
    ``<image>`` marker stands in Flamingo's documents: ``' circle
    Question: ...<|endofchunk|>'`` against ``'<image>Question:
    ...<|endofchunk|>'``, so that what the LM learns to read off a
    description there, Flamingo's cross-attention can put there."""
    return f' {description} {sentence}{END_OF_CHUNK_TOKEN}'


DESCRIPTIONS = ('word', 'colour', 'full')


def describe_shape(shape: Shape, style: str) -> str:
    """A shape described in ``style``: ``'word'`` (its type alone,
    ``'circle'``), ``'colour'`` (``'a red circle.'``) or ``'full'`` (size,
    colour, type and position: ``'a small red circle on the left.'``)."""
    if style == 'word':
        return shape.shape
    if style == 'colour':
        return f'{article(shape.colour)} {shape.colour} {shape.shape}.'
    if style == 'full':
        return canonical_caption((shape, ))
    raise ValueError(f'description must be one of {DESCRIPTIONS} or '
                     f"'mixed', got {style!r}")


def binding_episode(
        rng: random.Random,
        names: Sequence[str],
        num_items: int,
        description: str = 'mixed') -> Tuple[List[tuple], List[str]]:
    """One binding episode of ``num_items`` named shapes.

    Args:
        rng (random.Random): The random stream.
        names (Sequence[str]): The names to draw the episode's from.
        num_items (int): Shapes in the episode.
        description (str): How each shape is described (see
            :func:`describe_shape`), or ``'mixed'``: a style drawn per
            shape. Defaults to ``'mixed'``.

    Returns:
        tuple[list[tuple], list[str]]: ``(description, name, shape type)``
        of each item, and the episode's 3 or 4 names.
    """
    types = rng.sample(SHAPES, rng.choice(EPISODE_TYPES))
    chosen = rng.sample(list(names), len(types))
    items: List[tuple] = []
    for _ in range(num_items):
        k = rng.randrange(len(types))
        shape = sample_shape(rng, shape=types[k])
        style = rng.choice(DESCRIPTIONS) if description == 'mixed' \
            else description
        items.append((describe_shape(shape, style), chosen[k], types[k]))
    return items, chosen


@DATASETS.register_module()
class ShapesTextEpisodes(Dataset):
    """Rows of ``max_tokens`` tokens of the world's text, made on demand.

    A row is documents of the kinds in ``mix`` (drawn with those weights),
    each starting with the tokenizer's bos and ending with its eos, packed
    and cut at ``max_tokens``. A sample is ``dict(inputs=ids,
    attention_mask=ones)``, both ``(max_tokens, )`` int64 tensors, the
    format of :class:`~mmflamingo.datasets.TextCorpusDataset` (batch with
    ``collate_fn=dict(type='default_collate')``).

    Args:
        lm_world (str): The world's ``text/lm_world.json``.
        tokenizer (dict): ``pretrained`` (a local directory) plus
            ``AutoTokenizer.from_pretrained`` kwargs; it must know
            ``<image>`` and ``<|endofchunk|>``.
        mix (dict): Weight of each document kind: ``copy``, ``binding``,
            ``reading``, ``caption``, ``video``.
        max_tokens (int): Tokens per row. Defaults to 512.
        num_rows (int): The dataset's length (rows per epoch).
            Defaults to 100000.
        seed (int): Seed of the text. Defaults to 0.
        binding_description (str): How the binding episodes describe a
            shape (:func:`describe_shape`, or ``'mixed'``). Defaults to
            ``'word'``.
        shape_question_prob (float): The chance that a binding episode's
            chunk asks the shape's type instead of naming it, as the
            world's Flamingo episodes do. Defaults to 0.3.
        data_root (str): Prefix of ``lm_world``. Defaults to ''.
    """

    KINDS = ('copy', 'binding', 'reading', 'caption', 'video')

    def __init__(self,
                 lm_world: str,
                 tokenizer: dict,
                 mix: Dict[str, float],
                 max_tokens: int = 512,
                 num_rows: int = 100000,
                 seed: int = 0,
                 binding_description: str = 'word',
                 shape_question_prob: float = SHAPE_QUESTION_PROB,
                 data_root: str = '') -> None:
        import os.path as osp
        unknown = set(mix) - set(self.KINDS)
        if unknown or not any(w > 0 for w in mix.values()):
            raise ValueError(f'mix: weights of {self.KINDS}, at least one '
                             f'positive; got {mix}')
        self.world = load_lm_world(osp.join(data_root, lm_world))
        self.tokenizer = build_tokenizer(
            **tokenizer, field='dataset.tokenizer')
        vocab = self.tokenizer.get_vocab()
        for token in (MEDIA_TOKEN, END_OF_CHUNK_TOKEN):
            if token not in vocab:
                raise ValueError(f'dataset.tokenizer has no {token!r} token')
        self.copy_vocab = ordinary_token_ids(self.tokenizer)
        self.kinds = [k for k in self.KINDS if mix.get(k, 0) > 0]
        self.weights = [mix[k] for k in self.kinds]
        self.max_tokens = max_tokens
        self.num_rows = num_rows
        self.seed = seed
        if binding_description != 'mixed':
            describe_shape(
                Shape('circle', 'red', 'small', 'left'),
                binding_description)  # fail early on a bad one
        self.binding_description = binding_description
        if not 0 <= shape_question_prob <= 1:
            raise ValueError('shape_question_prob must be in [0, 1], got '
                             f'{shape_question_prob}')
        self.shape_question_prob = shape_question_prob
        self.metainfo: dict = {}

    def __len__(self) -> int:
        return self.num_rows

    # -------------------------------------------------------------- docs
    def _copy(self, rng: random.Random, room: int) -> List[int]:
        span = [
            rng.choice(self.copy_vocab)
            for _ in range(rng.randint(*COPY_SPAN))
        ]
        repeats = max(2, -(-room // len(span)))
        return span * repeats

    def _binding(self, rng: random.Random) -> str:
        items, _ = binding_episode(rng, self.world['names'],
                                   rng.randint(*EPISODE_ITEMS),
                                   self.binding_description)
        # as in Flamingo's episodes, some shapes are asked their type
        return ''.join(
            described_chunk(
                description,
                shape_sentence(shape) if rng.random() <
                self.shape_question_prob else binding_sentence(name))
            for description, name, shape in items)

    def _scene(self, rng: random.Random) -> Scene:
        return rng.choice(self.world['scenes'])

    def _reading(self, rng: random.Random) -> str:
        styles = document_styles(rng)
        chunks = []
        for _ in range(rng.randint(*DOC_CHUNKS)):
            scene = self._scene(rng)
            question, answer, qtype, _ = vqa_questions(scene, rng, 1)[0]
            chunks.append(
                described_chunk(
                    canonical_caption(scene),
                    qa_sentence(question,
                                styled_answer(answer, qtype, styles[qtype]))))
        return ''.join(chunks)

    def _caption(self, rng: random.Random) -> str:
        return ''.join(MEDIA_TOKEN + caption_sentence(
            rng.choice(caption_references(self._scene(rng)))) +
                       END_OF_CHUNK_TOKEN
                       for _ in range(rng.randint(*DOC_CHUNKS)))

    def _video(self, rng: random.Random) -> str:
        chunks = []
        for _ in range(rng.randint(*DOC_CHUNKS)):
            shape, colour, direction = rng.choice(self.world['video_combos'])
            chunks.append(
                described_chunk(
                    video_caption(colour, shape, direction),
                    qa_sentence(motion_question(shape), direction)))
        return ''.join(chunks)

    def document(self,
                 kind: str,
                 rng: random.Random,
                 room: Optional[int] = None) -> List[int]:
        """One document's ids (bos ... eos) of ``kind``; ``room`` is what
        is left of the row (a copy span repeats to fill it)."""
        tok = self.tokenizer
        if kind == 'copy':
            body = self._copy(rng, room or self.max_tokens)
        else:
            body = tok(
                getattr(self, f'_{kind}')(rng),
                add_special_tokens=False)['input_ids']
        return [tok.bos_token_id] + body + [tok.eos_token_id]

    def __getitem__(self, idx: int) -> dict:
        rng = random.Random(f'shapes-text-{self.seed}-{idx}')
        ids: List[int] = []
        while len(ids) < self.max_tokens:
            kind = rng.choices(self.kinds, self.weights)[0]
            ids += self.document(kind, rng, self.max_tokens - len(ids))
        inputs = torch.tensor(ids[:self.max_tokens])
        return dict(inputs=inputs, attention_mask=torch.ones_like(inputs))
