"""Write the whole shapes world under a root, in the real datasets' formats.

Layout (see :func:`write_shapes_world`)::

    images/<id>.png                 64x64 scenes, one id space for all
    captions/karpathy_shapes.json   train: training scenes; test: held out
    vqa/{train,val}_{questions,annotations}.json
    binding/{train,val}_{questions,annotations}.json
    videoqa/{train,val}_{questions,annotations}.json
    interleaved/docs.jsonl          scene documents and binding episodes
    pairs.jsonl                     one caption per training scene
    videos/<id>.mp4, videos.jsonl   a shape crossing the frame, its texts
    text/corpus.txt                 the tokenizer's text: every sentence
    text/lm_world.json              what the language model's text is made
                                    of: training scenes and training names
    world.json                      seed, scale, counts, completeness

**Held out.** The caption test images and the VQA val images are scenes
whose content (shapes, colours, sizes, positions) no training scene has; the
binding val episodes, their images and their names appear in no training
file (their names are set aside before any other name is handed out); the
val videos show (shape, colour, direction) combinations no training video
shows. Question ids are unique across all question files, so that a query
is never mistaken for a support sample.

**Documents** have the structure of the evaluation prompts: 3 to 9 images
(an 8-shot prompt and its query have 9), each followed by its caption
(``Output: ...``), a question and its answer (``Question: ... Short answer:
...``) or a reference caption, the answers of a document in its own style
per question type (:mod:`.language`). A binding episode is a document of 6
to 9 single-shape images of 3 or 4 shape types, each type named by a name
of the training pool drawn for that episode alone, so only the episode's
own earlier images tell which name is which.
"""
import json
import os
import os.path as osp
import random
import shutil
from typing import Dict, Iterable, List, Optional, Tuple

from PIL import Image

from mmflamingo.datasets.transforms.video import write_video
from .language import (BINDING_QUESTION, NUM_ANSWERS, NameGenerator,
                       binding_sentence, caption_references, caption_sentence,
                       document_styles, motion_question, qa_sentence,
                       shape_sentence, styled_answer, syllable_words,
                       title_sentence, tokenize, video_caption, vqa_answers,
                       vqa_questions)
from .scenes import (COLOURS, DIRECTIONS, SHAPES, Scene, Shape, render_scene,
                     render_video, sample_scene, sample_shape, scene_key)

__all__ = ['SCALES', 'VERSION', 'lm_world', 'write_shapes_world']

# how much of everything each scale writes
SCALES: Dict[str, dict] = dict(
    tiny=dict(
        train_scenes=24,
        caption_test=6,
        vqa_val_scenes=5,
        scene_docs=8,
        binding_pool=20,
        binding_train=6,
        binding_val=3,
        videos=12,
        video_val=4,
        syllable_lines=7),
    default=dict(
        train_scenes=20000,
        caption_test=300,
        vqa_val_scenes=250,
        scene_docs=3000,
        binding_pool=1000,
        binding_train=3000,
        binding_val=120,
        videos=1200,
        video_val=400,
        syllable_lines=1075),
)
VERSION = 4
VQA_PER_SCENE = 2
DOC_IMAGES = (3, 9)  # images of a scene document: at least, at most
DOC_KINDS = ('caption', 'vqa', 'mixed')
# how often a scene document has each kind: mostly question-answer pairs,
# whose answers are a token or two where a caption has a dozen
DOC_KIND_WEIGHTS = (2, 5, 3)
CHUNK_KINDS = ('caption', 'vqa', 'plain')  # the chunks of a mixed document
TITLE_PROB = 0.3
MATCHED_SIM = 0.3
EPISODE_TYPES = (3, 4)  # shape types (= names) of a binding episode
EPISODE_DOC_IMAGES = (6, 9)  # a training episode's images
MIN_EPISODE_DEMOS = 8  # a val episode's support: enough for 8 shots
# how often a training episode asks an image's shape rather than its name:
# the answer is then read off the image itself, which teaches the
# cross-attention what the language model needs to tell the names apart
SHAPE_QUESTION_PROB = 0.3
EPISODE_QUERIES = 4
NUM_FRAMES = 8
# (shape, colour, direction) combinations kept for the val videos
HELD_OUT_VIDEO_COMBOS = 24
MAX_TRIES = 1000


def _rng(seed: int, part: str) -> random.Random:
    """An independent random stream per part of the world."""
    return random.Random(f'shapes-world-{seed}-{part}')


def _dump(path: str, data) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f)


def _dump_lines(path: str, rows: Iterable) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        f.writelines((row if isinstance(row, str) else json.dumps(row)) + '\n'
                     for row in rows)


def scene_to_json(scene: Scene) -> List[list]:
    """A scene as ``[[shape, colour, size, position], ...]``."""
    return [[s.shape, s.colour, s.size, s.position] for s in scene]


class _World:
    """Everything the world says, built in memory before it is written."""

    def __init__(self, seed: int, scale: dict) -> None:
        self.seed = seed
        self.scale = scale
        self.scenes: Dict[int, Scene] = {}  # image id -> what it shows
        self.karpathy: List[dict] = []
        self.questions: Dict[str, List[dict]] = {}
        self.annotations: Dict[str, List[dict]] = {}
        self.docs: List[dict] = []
        self.pairs: List[dict] = []
        self.videos: Dict[str, Tuple[Shape, str]] = {}  # shape, direction
        self.video_rows: List[dict] = []
        self.tokenizer_text: List[str] = []
        self._next_question_id = 0
        self._next_sentence_id = 0
        names = NameGenerator(_rng(seed, 'names'))
        # the val episodes' names first: no training text can hold them
        self.val_names = names.take(max(EPISODE_TYPES) * scale['binding_val'])
        self.train_names = names.take(len(names))

    def add_image(self, scene: Scene) -> int:
        image_id = len(self.scenes)
        self.scenes[image_id] = scene
        return image_id

    def add_question(self, file: str, image_id, question: str,
                     answers: List[str], question_type: str, answer_type: str,
                     **extra) -> None:
        """Add a question of ``file`` (``'vqa_train'``, ...) and its
        annotation; ``extra`` are more keys of the question."""
        qid = self._next_question_id
        self._next_question_id += 1
        self.questions.setdefault(file, []).append(
            dict(
                question_id=qid, image_id=image_id, question=question,
                **extra))
        self.annotations.setdefault(file, []).append(
            dict(
                question_id=qid,
                image_id=image_id,
                question_type=question_type,
                answer_type=answer_type,
                multiple_choice_answer=answers[0],
                answers=[
                    dict(answer=a, answer_confidence='yes', answer_id=j + 1)
                    for j, a in enumerate(answers)
                ]))

    def add_caption_image(self, scene: Scene, split: str) -> List[str]:
        """Add an image of the Karpathy split; returns its references."""
        image_id = self.add_image(scene)
        references = caption_references(scene)
        first = self._next_sentence_id
        self._next_sentence_id += len(references)
        self.karpathy.append(
            dict(
                filepath='',
                filename=f'{image_id}.png',
                imgid=len(self.karpathy),
                split=split,
                cocoid=image_id,
                sentids=list(range(first, first + len(references))),
                sentences=[
                    dict(
                        raw=raw,
                        tokens=tokenize(raw),
                        imgid=len(self.karpathy),
                        sentid=first + j) for j, raw in enumerate(references)
                ]))
        return references

    def add_vqa(self, file: str, image_id: int, rng: random.Random) -> None:
        """Questions of ``file`` about an image, short-style answers."""
        for question, answer, qtype, atype in vqa_questions(
                self.scenes[image_id], rng, VQA_PER_SCENE):
            self.add_question(file, image_id, question,
                              vqa_answers(answer, rng), qtype, atype)

    # ------------------------------------------------------------ parts
    def build_scenes(self) -> None:
        rng = _rng(self.seed, 'scenes')
        self.train_ids = []
        for _ in range(self.scale['train_scenes']):
            image_id = len(self.scenes)
            refs = self.add_caption_image(sample_scene(rng), 'train')
            self.train_ids.append(image_id)
            self.pairs.append(
                dict(
                    image=f'{image_id}.png',
                    caption=caption_sentence(rng.choice(refs))))
            self.add_vqa('vqa_train', image_id, rng)
        seen = {scene_key(self.scenes[i]) for i in self.train_ids}
        for _ in range(self.scale['caption_test']):
            self.add_caption_image(self._held_out(rng, seen), 'test')
        for _ in range(self.scale['vqa_val_scenes']):
            image_id = self.add_image(self._held_out(rng, seen))
            self.add_vqa('vqa_val', image_id, rng)

    @staticmethod
    def _held_out(rng: random.Random, seen: set) -> Scene:
        for _ in range(MAX_TRIES):
            scene = sample_scene(rng)
            if scene_key(scene) not in seen:
                return scene
        raise RuntimeError(f'no unseen scene in {MAX_TRIES} tries: too '
                           'many training scenes')

    def _scene_chunk(self, image_id: int, kind: str, styles: Dict[str, str],
                     rng: random.Random) -> str:
        """What a document says after an image of a training scene."""
        scene = self.scenes[image_id]
        if kind == 'caption':
            return caption_sentence(caption_references(scene)[0])
        if kind == 'plain':
            return rng.choice(caption_references(scene))
        question, answer, qtype, _ = vqa_questions(scene, rng, 1)[0]
        return qa_sentence(question, styled_answer(answer, qtype,
                                                   styles[qtype]))

    def build_scene_docs(self) -> None:
        rng = _rng(self.seed, 'docs')
        for _ in range(self.scale['scene_docs']):
            ids = rng.sample(self.train_ids, rng.randint(*DOC_IMAGES))
            kind = rng.choices(DOC_KINDS, DOC_KIND_WEIGHTS)[0]
            styles = document_styles(rng)
            sentences = [title_sentence(rng)] if rng.random() < TITLE_PROB \
                else []
            image_info = []
            for image_id in ids:
                chunk = rng.choice(CHUNK_KINDS) if kind == 'mixed' else kind
                image_info.append(self._image_entry(image_id, len(sentences)))
                sentences.append(
                    self._scene_chunk(image_id, chunk, styles, rng))
            self.add_doc(sentences, image_info)

    @staticmethod
    def _image_entry(image_id: int, sentence: int) -> dict:
        return dict(
            image_name=f'{image_id}.png',
            matched_text_index=sentence,
            matched_sim=MATCHED_SIM)

    def add_doc(self,
                sentences: List[str],
                image_info: List[dict],
                names: Tuple[str, ...] = ()) -> None:
        """A document; the tokenizer's text gets its sentences, without
        the ``names`` (no name becomes a token of its own)."""
        self.docs.append(dict(text_list=sentences, image_info=image_info))
        text = ' '.join(sentences)
        for name in names:
            text = text.replace(f' {name}', '')
        self.tokenizer_text.append(text)

    def _binding_image(self, shape: str, rng: random.Random) -> int:
        return self.add_image((sample_shape(rng, shape=shape), ))

    def _binding_sample(self, file: str, episode: str, shape: str, name: str,
                        names: List[str], rng: random.Random) -> None:
        image_id = self._binding_image(shape, rng)
        self.add_question(
            file,
            image_id,
            BINDING_QUESTION, [name] * NUM_ANSWERS,
            'binding',
            'other',
            episode=episode,
            multiple_choices=names)

    def build_binding(self) -> None:
        rng = _rng(self.seed, 'binding')
        # single-shape training images, shared by the training episodes
        pool = {
            shape: [
                self._binding_image(shape, rng)
                for _ in range(self.scale['binding_pool'] // len(SHAPES))
            ]
            for shape in SHAPES
        }
        for _ in range(self.scale['binding_train']):
            types = rng.sample(SHAPES, rng.choice(EPISODE_TYPES))
            names = rng.sample(self.train_names, len(types))
            sentences, image_info = [], []
            for _ in range(rng.randint(*EPISODE_DOC_IMAGES)):
                k = rng.randrange(len(types))
                image_info.append(
                    self._image_entry(
                        rng.choice(pool[types[k]]), len(sentences)))
                # some images are asked their shape instead of their name
                sentences.append(
                    shape_sentence(types[k]) if rng.random() <
                    SHAPE_QUESTION_PROB else binding_sentence(names[k]))
            self.add_doc(sentences, image_info, tuple(names))
        val_names = iter(self.val_names)
        for e in range(self.scale['binding_val']):
            episode = f'val{e:04d}'
            types = rng.sample(SHAPES, rng.choice(EPISODE_TYPES))
            names = [next(val_names) for _ in types]
            per_type = -(-MIN_EPISODE_DEMOS // len(types))
            for k in [k for k in range(len(types)) for _ in range(per_type)]:
                self._binding_sample('binding_train', episode, types[k],
                                     names[k], names, rng)
            order = rng.sample(range(len(types)), len(types))
            for q in range(EPISODE_QUERIES):
                k = order[q % len(types)]
                self._binding_sample('binding_val', episode, types[k],
                                     names[k], names, rng)

    def _video(self, rng: random.Random, combos: List[tuple]) -> str:
        shape, colour, direction = rng.choice(combos)
        clip = sample_shape(rng, shape=shape)
        clip = Shape(clip.shape, colour, clip.size, clip.position, clip.dx,
                     clip.dy)
        name = f'{len(self.videos)}.mp4'
        self.videos[name] = (clip, direction)
        return name

    def build_videos(self) -> None:
        rng = _rng(self.seed, 'videos')
        combos = [(s, c, d) for s in SHAPES for c in sorted(COLOURS)
                  for d in sorted(DIRECTIONS)]
        held_out = rng.sample(combos, HELD_OUT_VIDEO_COMBOS)
        seen = [c for c in combos if c not in held_out]
        self.video_combos = seen
        for _ in range(self.scale['videos']):
            name = self._video(rng, seen)
            clip, direction = self.videos[name]
            caption = video_caption(clip.colour, clip.shape, direction)
            question = motion_question(clip.shape)
            # each training clip with its caption and its question
            for text in (caption_sentence(caption),
                         qa_sentence(question, direction)):
                self.video_rows.append(dict(video=name, caption=text))
                self.tokenizer_text.append(text)
            self.add_question('videoqa_train',
                              osp.splitext(name)[0], question,
                              [direction] * NUM_ANSWERS, 'motion', 'other')
        for _ in range(self.scale['video_val']):
            name = self._video(rng, held_out)
            clip, direction = self.videos[name]
            self.add_question('videoqa_val',
                              osp.splitext(name)[0],
                              motion_question(clip.shape),
                              [direction] * NUM_ANSWERS, 'motion', 'other')

    def build_tokenizer_text(self) -> None:
        """What the tokenizer learns its merges from, besides the
        documents: every caption and question, and syllable words."""
        rng = _rng(self.seed, 'tokenizer')
        for entry in self.karpathy:
            if entry['split'] == 'train':
                self.tokenizer_text.append(' '.join(
                    s['raw'] for s in entry['sentences']))
        for question in self.questions['vqa_train']:
            self.tokenizer_text.append(question['question'])
        # each pair of syllables a few times at most (about 5), so that no
        # name, a pair, becomes a token (with min_frequency 10, see the
        # recipe), however many scenes the world has
        for _ in range(self.scale['syllable_lines']):
            self.tokenizer_text.append(' '.join(syllable_words(rng, 12)))

    def lm_world(self) -> dict:
        """The training scenes, names and video (shape, colour,
        direction) combinations the LM's text is made of."""
        return dict(
            scenes=[scene_to_json(self.scenes[i]) for i in self.train_ids],
            names=self.train_names,
            video_combos=[list(c) for c in self.video_combos])


def lm_world(seed: int = 0, scale: str = 'default') -> dict:
    """What ``text/lm_world.json`` of the world of ``seed`` and ``scale``
    holds (its training scenes, names and video combinations), made in
    memory without writing anything."""
    world = _World(seed, SCALES[scale])
    world.build_scenes()
    world.build_videos()
    return world.lm_world()


def _paths(root: str) -> Dict[str, str]:
    paths = dict(
        root=root,
        manifest=osp.join(root, 'world.json'),
        images=osp.join(root, 'images'),
        videos=osp.join(root, 'videos'),
        captions=osp.join(root, 'captions', 'karpathy_shapes.json'),
        docs=osp.join(root, 'interleaved', 'docs.jsonl'),
        pairs=osp.join(root, 'pairs.jsonl'),
        video_pairs=osp.join(root, 'videos.jsonl'),
        corpus=osp.join(root, 'text', 'corpus.txt'),
        lm_world=osp.join(root, 'text', 'lm_world.json'))
    for task in ('vqa', 'binding', 'videoqa'):
        for split in ('train', 'val'):
            for kind in ('questions', 'annotations'):
                paths[f'{task}_{split}_{kind}'] = osp.join(
                    root, task, f'{split}_{kind}.json')
    return paths


def _read_manifest(path: str) -> Optional[dict]:
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        try:
            return json.load(f)
        except ValueError:
            return {}


def write_shapes_world(root: str,
                       seed: int = 0,
                       scale: str = 'default',
                       force: bool = False,
                       progress: bool = False) -> Dict[str, str]:
    """Generate the shapes world and write every file of its layout.

    Nothing is written when ``root/world.json`` records a complete world
    of the same seed, scale and version (unless ``force``). Otherwise the
    images and videos of a previous world under ``root`` (one with a
    ``world.json``) are removed first, and ``world.json`` is written last,
    with ``complete: true``, so an interrupted run is redone. Its
    ``counts`` are the images, the caption images per split, the questions
    per question file (``vqa_train``, ..., ``videoqa_val``), the binding
    episodes, documents, pairs, videos and the tokenizer's text lines.

    Args:
        root (str): The world's directory (created).
        seed (int): The world's seed: the same seed writes the same bytes.
            Defaults to 0.
        scale (str): ``'tiny'`` (tests, about a second) or ``'default'``
            (enough to train a tiny Flamingo). Defaults to ``'default'``.
        force (bool): Regenerate even if the world is complete.
            Defaults to False.
        progress (bool): Show a progress bar while writing the media.
            Defaults to False.

    Returns:
        dict: The paths, keyed ``root``, ``manifest``, ``images``,
        ``videos``, ``captions``, ``docs``, ``pairs``, ``video_pairs``,
        ``corpus``, ``lm_world`` and
        ``{vqa,binding,videoqa}_{train,val}_{questions,annotations}``.
    """
    if scale not in SCALES:
        raise ValueError(f'scale must be one of {tuple(SCALES)}, got '
                         f'{scale!r}')
    paths = _paths(root)
    manifest = _read_manifest(paths['manifest'])
    wanted = dict(seed=seed, scale=scale, version=VERSION)
    if manifest is not None:
        if not force and manifest.get('complete') and all(
                manifest.get(k) == v for k, v in wanted.items()):
            return paths
        for media in ('images', 'videos'):
            shutil.rmtree(paths[media], ignore_errors=True)
    os.makedirs(root, exist_ok=True)
    _dump(paths['manifest'], dict(wanted, complete=False))

    world = _World(seed, SCALES[scale])
    world.build_scenes()
    world.build_scene_docs()
    world.build_binding()
    world.build_videos()
    world.build_tokenizer_text()

    _write_media(world, paths, progress)
    _dump(paths['captions'], dict(images=world.karpathy))
    for task in ('vqa', 'binding', 'videoqa'):
        for split in ('train', 'val'):
            key = f'{task}_{split}'
            _dump(
                paths[f'{key}_questions'],
                dict(
                    task_type='Multiple-Choice'
                    if task == 'binding' else 'Open-Ended',
                    data_type='shapes',
                    data_subtype=split,
                    questions=world.questions[key]))
            _dump(
                paths[f'{key}_annotations'],
                dict(
                    data_type='shapes',
                    data_subtype=split,
                    annotations=world.annotations[key]))
    _dump_lines(paths['docs'], world.docs)
    _dump_lines(paths['pairs'], world.pairs)
    _dump_lines(paths['video_pairs'], world.video_rows)
    _dump_lines(paths['corpus'], world.tokenizer_text)
    _dump(paths['lm_world'], world.lm_world())

    splits = [e['split'] for e in world.karpathy]
    counts = dict(
        images=len(world.scenes),
        caption_train=splits.count('train'),
        caption_test=splits.count('test'),
        **{
            key: len(questions)
            for key, questions in sorted(world.questions.items())
        },
        binding_train_episodes=world.scale['binding_train'],
        binding_val_episodes=world.scale['binding_val'],
        docs=len(world.docs),
        pairs=len(world.pairs),
        videos=len(world.videos),
        video_pairs=len(world.video_rows),
        corpus_lines=len(world.tokenizer_text))
    _dump(paths['manifest'], dict(wanted, counts=counts, complete=True))
    return paths


def _write_media(world: _World, paths: Dict[str, str], progress: bool) -> None:
    """Render and save every image and video."""
    os.makedirs(paths['images'], exist_ok=True)
    os.makedirs(paths['videos'], exist_ok=True)
    jobs = [('image', i, scene) for i, scene in world.scenes.items()]
    jobs += [('video', name, video) for name, video in world.videos.items()]
    if progress:
        from tqdm import tqdm
        jobs = tqdm(jobs, desc='shapes world', unit='file')
    for kind, name, content in jobs:
        if kind == 'image':
            Image.fromarray(render_scene(content)).save(
                osp.join(paths['images'], f'{name}.png'))
        else:
            write_video(
                osp.join(paths['videos'], name),
                render_video(*content, num_frames=NUM_FRAMES))
