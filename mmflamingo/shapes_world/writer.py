"""Write the whole shapes world under a root, in the real datasets' formats.

Layout (see :func:`write_shapes_world`)::

    images/<id>.png                 64x64 scenes, one id space for all
    captions/karpathy_shapes.json   train: training scenes; test: held out
    vqa/{train,val}_{questions,annotations}.json
    binding/{train,val}_{questions,annotations}.json
    interleaved/docs.jsonl          scene documents and binding episodes
    pairs.jsonl                     one caption per training scene
    videos/<id>.mp4, videos.jsonl   a shape crossing the frame
    text/corpus.txt                 the training text, one document a line
    world.json                      seed, scale, counts, completeness

Held-out data: the caption test images and the VQA val images are scenes
whose content (shapes, colours, sizes, positions) no training scene has, so
in practice they have two or three shapes; the binding val episodes, their
images and their names appear in no training file. Question ids are unique
across all four question files, so that a query is never mistaken for a
support sample.
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
                       binding_sentence, caption_references, qa_sentence,
                       scene_sentence, title_sentence, tokenize, video_caption,
                       vqa_answers, vqa_questions)
from .scenes import (DIRECTIONS, SHAPES, Scene, Shape, render_scene,
                     render_video, sample_scene, sample_shape, scene_key)

__all__ = ['SCALES', 'write_shapes_world']

# how much of everything each scale writes
SCALES: Dict[str, dict] = dict(
    tiny=dict(
        train_scenes=24,
        caption_test=6,
        vqa_val_scenes=5,
        scene_docs=6,
        binding_train=4,
        binding_val=3,
        videos=4),
    default=dict(
        train_scenes=4000,
        caption_test=300,
        vqa_val_scenes=250,
        scene_docs=1500,
        binding_train=500,
        binding_val=60,
        videos=200),
)
VERSION = 2
VQA_PER_SCENE = 2
DOC_IMAGES = (3, 6)  # images of a scene document: at least, at most
DOC_STYLES = ('caption', 'vqa', 'plain', 'mixed')
# how often a scene document has each style: mostly question-answer pairs,
# whose grounding the captions alone teach too slowly
DOC_STYLE_WEIGHTS = (2, 5, 1, 2)
TITLE_PROB = 0.3
MATCHED_SIM = 0.3
EPISODE_TYPES = (3, 4)  # shape types (= names) of a binding episode
EPISODE_DOC_IMAGES = 6  # a training episode: one document of 6 images
MIN_EPISODE_DEMOS = 8  # a val episode's support: enough for 8 shots
EPISODE_QUERIES = 4
NUM_FRAMES = 8
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
        self.corpus: List[str] = []
        self._next_question_id = 0
        self._next_sentence_id = 0
        self.names = NameGenerator(_rng(seed, 'names'))

    def add_image(self, scene: Scene) -> int:
        image_id = len(self.scenes)
        self.scenes[image_id] = scene
        return image_id

    def add_question(self, file: str, image_id: int, question: str,
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

    def add_vqa(self, file: str, image_id: int,
                rng: random.Random) -> List[Tuple[str, str]]:
        """Questions of ``file`` about an image; returns the
        ``(question, answer)`` pairs."""
        asked = []
        for question, answer, qtype, atype in vqa_questions(
                self.scenes[image_id], rng, VQA_PER_SCENE):
            self.add_question(file, image_id, question,
                              vqa_answers(answer, rng), qtype, atype)
            asked.append((question, answer))
        return asked

    # ------------------------------------------------------------ parts
    def build_scenes(self) -> None:
        rng = _rng(self.seed, 'scenes')
        self.train_ids = []
        for _ in range(self.scale['train_scenes']):
            image_id = len(self.scenes)
            refs = self.add_caption_image(sample_scene(rng), 'train')
            self.train_ids.append(image_id)
            self.pairs.append(
                dict(image=f'{image_id}.png', caption=rng.choice(refs)))
            asked = self.add_vqa('vqa_train', image_id, rng)
            self.corpus.append(' '.join(refs))
            self.corpus.append(' '.join(qa_sentence(q, a) for q, a in asked))
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

    def build_scene_docs(self) -> None:
        rng = _rng(self.seed, 'docs')
        for _ in range(self.scale['scene_docs']):
            ids = rng.sample(self.train_ids, rng.randint(*DOC_IMAGES))
            style = rng.choices(DOC_STYLES, DOC_STYLE_WEIGHTS)[0]
            sentences = [title_sentence(rng)] if (rng.random()
                                                  < TITLE_PROB) else []
            image_info = []
            for image_id in ids:
                image_style = rng.choice(
                    DOC_STYLES[:-1]) if style == 'mixed' else style
                image_info.append(
                    dict(
                        image_name=f'{image_id}.png',
                        matched_text_index=len(sentences),
                        matched_sim=MATCHED_SIM))
                sentences.append(
                    scene_sentence(self.scenes[image_id], image_style, rng))
            self.add_doc(sentences, image_info)

    def add_doc(self, sentences: List[str], image_info: List[dict]) -> None:
        self.docs.append(dict(text_list=sentences, image_info=image_info))
        self.corpus.append(' '.join(sentences))

    def _episode(self, rng: random.Random) -> Tuple[List[str], List[str]]:
        """A binding episode's shape types and their fresh names."""
        types = rng.sample(SHAPES, rng.choice(EPISODE_TYPES))
        return types, self.names.take(len(types))

    def _binding_sample(self, file: str, episode: str, shape: str, name: str,
                        names: List[str], rng: random.Random) -> int:
        image_id = self.add_image((sample_shape(rng, shape=shape), ))
        self.add_question(
            file,
            image_id,
            BINDING_QUESTION, [name] * NUM_ANSWERS,
            'binding',
            'other',
            episode=episode,
            multiple_choices=names)
        return image_id

    def build_binding(self) -> None:
        rng = _rng(self.seed, 'binding')
        for e in range(self.scale['binding_train']):
            episode = f'train{e:04d}'
            types, names = self._episode(rng)
            # names introduced next to images, then asked about again
            introduce = rng.random() < 0.5
            sentences, image_info, named = [], [], set()
            for _ in range(EPISODE_DOC_IMAGES):
                k = rng.randrange(len(types))
                image_id = self._binding_sample('binding_train', episode,
                                                types[k], names[k], names, rng)
                image_info.append(
                    dict(
                        image_name=f'{image_id}.png',
                        matched_text_index=len(sentences),
                        matched_sim=MATCHED_SIM))
                sentences.append(
                    binding_sentence(names[k], introduce
                                     and names[k] not in named))
                named.add(names[k])
            self.add_doc(sentences, image_info)
        for e in range(self.scale['binding_val']):
            episode = f'val{e:04d}'
            types, names = self._episode(rng)
            per_type = -(-MIN_EPISODE_DEMOS // len(types))
            for k in [k for k in range(len(types)) for _ in range(per_type)]:
                self._binding_sample('binding_train', episode, types[k],
                                     names[k], names, rng)
            order = rng.sample(range(len(types)), len(types))
            for q in range(EPISODE_QUERIES):
                k = order[q % len(types)]
                self._binding_sample('binding_val', episode, types[k],
                                     names[k], names, rng)

    def build_videos(self) -> None:
        rng = _rng(self.seed, 'videos')
        for i in range(self.scale['videos']):
            shape = sample_shape(rng)
            direction = rng.choice(sorted(DIRECTIONS))
            caption = video_caption(shape.colour, shape.shape, direction)
            name = f'{i}.mp4'
            self.videos[name] = (shape, direction)
            self.video_rows.append(dict(video=name, caption=caption))
            self.corpus.append(caption)


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
        corpus=osp.join(root, 'text', 'corpus.txt'))
    for task in ('vqa', 'binding'):
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
    per question file (``vqa_train``, ..., ``binding_val``), the binding
    episodes, documents, pairs, videos and corpus lines.

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
        ``corpus`` and ``{vqa,binding}_{train,val}_{questions,annotations}``.
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

    _write_media(world, paths, progress)
    _dump(paths['captions'], dict(images=world.karpathy))
    for task in ('vqa', 'binding'):
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
    _dump_lines(paths['corpus'], world.corpus)

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
        corpus_lines=len(world.corpus))
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
