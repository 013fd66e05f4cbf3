"""The few-shot evaluation benchmarks: one sample per query (or demo).

Every sample is a dict with ``media`` (a list holding the image path),
``sample_id`` (the id RICES feature caches and metrics key on), ``split``,
``source`` (where it comes from, for error messages) and the fields the
prompts (:mod:`mmflamingo.evaluation.prompts`) and metrics need:

- :class:`KarpathyCaptionDataset` (COCO, Flickr30k): ``caption`` (the first
  reference, the demo caption as in OpenFlamingo), ``captions`` (all
  references), ``image_id``;
- :class:`VQADataset` (VQAv2, OK-VQA, TextVQA, VizWiz): ``question``,
  ``question_id``, ``image_id``, ``answers`` (the annotators' answers,
  usually 10; absent without an annotation file), ``answer_records`` (the
  annotation's answer dicts, which the VQA accuracy scores against);
- :class:`HatefulMemesDataset`: ``text`` (the meme's OCR text), ``label``
  (0/1), ``class_name`` (``'no'``/``'yes'``), ``id``;
- :class:`ImageFolderClassification` (ImageNet): ``label``, ``class_name``.

Support and query sets are two datasets, built from the same files with
different ``split`` (Karpathy's ``'train'`` as support, ``'test'`` as query;
the ``train`` and ``val`` folders of ImageNet), or from each split's own files
(VQA, HatefulMemes), ``split`` then naming the split.

A sample whose image is missing raises at construction, naming the file, or
with ``on_missing='skip'`` is left out and counted (``num_skipped``, logged).
A sample whose text (:data:`TEXT_FIELDS`) holds a literal ``<image>`` or
``<|endofchunk|>``, which a prompt would read as a marker binding the wrong
image, is always left out, with a warning naming it, and counted too.
A missing annotation file raises at construction, naming its argument.
"""
import json
import logging
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

from mmengine.dataset import BaseDataset
from mmengine.logging import print_log

from mmflamingo.registry import DATASETS
from mmflamingo.tokens import flamingo_tokens_in
from .sequence_dataset import check_dir, check_file

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
# ImageNet's 1000 class names, one a line in the order of the sorted WordNet
# ids: the curated names of CLIP's zero-shot evaluation, which OpenFlamingo
# ranks (its IMAGENET_CLASSNAMES); public data, shipped with the package
IMAGENET_CLASS_NAMES_FILE = osp.join(
    osp.dirname(osp.abspath(__file__)), 'imagenet_classnames.txt')
# the fields of a sample whose text reaches a prompt or a scored candidate
TEXT_FIELDS = ('caption', 'captions', 'question', 'answers',
               'multiple_choices', 'text', 'class_name')


def _flamingo_tokens_by_field(sample: dict) -> Dict[str, List[str]]:
    """The Flamingo tokens each text field of ``sample`` holds (a field
    may be a string or a list of strings); fields without any are left out.
    """
    found = {}
    for field in TEXT_FIELDS:
        value = sample.get(field)
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, (list, tuple)):
            continue
        tokens = {
            token
            for text in texts if isinstance(text, str)
            for token in flamingo_tokens_in(text)
        }
        if tokens:
            found[field] = sorted(tokens)
    return found


def _load_json(path: str, field: str) -> Union[dict, list]:
    check_file(path, field)
    with open(path, encoding='utf-8') as f:
        try:
            return json.load(f)
        except ValueError as error:
            raise ValueError(f'{field}: {path} is not valid JSON '
                             f'({error})') from None


class BaseEvalDataset(BaseDataset):
    """Shared by the evaluation datasets: splits and missing images.

    Subclasses implement :meth:`load_samples`, returning every sample of the
    split with its ``media``; this class drops (or fails on) the samples
    whose image does not exist, and drops with a warning those whose text
    holds a literal Flamingo token.

    Args:
        split (str): The split to load (or, for one-file-per-split formats,
            the split the files are).
        on_missing (str): A sample whose image file does not exist:
            ``'fail'`` raises ``FileNotFoundError`` naming it, ``'skip'``
            leaves it out (counted in ``num_skipped`` and logged). Defaults
            to ``'fail'``.
        **kwargs: :class:`mmengine.dataset.BaseDataset` arguments
            (``ann_file``, ``data_root``, ``data_prefix``, ``pipeline``,
            ``indices``, ...).
    """

    def __init__(self, split: str, on_missing: str = 'fail', **kwargs) -> None:
        if on_missing not in ('fail', 'skip'):
            raise ValueError(f"on_missing must be 'fail' or 'skip', got "
                             f'{on_missing!r}')
        self.split = split
        self.on_missing = on_missing
        self.num_skipped = 0
        super().__init__(**kwargs)

    def load_samples(self) -> List[dict]:
        """Every sample of the split, each with ``media`` and ``source``."""
        raise NotImplementedError

    def load_data_list(self) -> List[dict]:
        data_list, num_missing = [], 0
        name = f'{type(self).__name__} ({self.split})'
        for sample in self.load_samples():
            tokens = _flamingo_tokens_by_field(sample)
            if tokens:
                self.num_skipped += 1
                print_log(
                    f'{name}: leaving out {sample["source"]}: ' + ', '.join(
                        f'its {field} holds a literal {" and ".join(found)}'
                        for field, found in tokens.items()) +
                    ', which a prompt would read as a marker',
                    logger='current',
                    level=logging.WARNING)
                continue
            missing = [p for p in sample['media'] if not osp.isfile(p)]
            if not missing:
                sample['split'] = self.split
                data_list.append(sample)
            elif self.on_missing == 'fail':
                raise FileNotFoundError(
                    f'image {missing[0]} of {sample["source"]} does not '
                    "exist (on_missing='skip' leaves such samples out)")
            else:
                num_missing += 1
        self.num_skipped += num_missing
        if num_missing:
            print_log(
                f'{name}: skipped {num_missing} samples whose image is '
                'missing',
                logger='current',
                level=logging.WARNING)
        return data_list


@DATASETS.register_module()
class KarpathyCaptionDataset(BaseEvalDataset):
    """COCO or Flickr30k captions in Karpathy's split file.

    ``ann_file`` is Karpathy's ``dataset_coco.json`` or
    ``dataset_flickr30k.json``:
    ``{"images": [{"filename", "filepath", "split", "sentences": [{"raw"}],
    "cocoid" (COCO) | "imgid"}]}``. An image is
    ``data_prefix['img_path']/filepath/filename`` (Flickr30k has no
    ``filepath``: ``img_path/filename``). ``image_id`` is COCO's ``cocoid``,
    else the file name without extension (OpenFlamingo's ids for both).

    Args:
        ann_file (str): The Karpathy json.
        split (str | Sequence[str]): Karpathy split(s) to load: ``'train'``,
            ``'restval'``, ``'val'``, ``'test'``. Defaults to ``'test'``.
        data_prefix (dict): ``img_path``: the image root. Defaults to
            ``dict(img_path='')``.
        on_missing (str): ``'fail'`` or ``'skip'``. Defaults to ``'fail'``.
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self,
                 ann_file: str,
                 split: Union[str, Sequence[str]] = 'test',
                 data_prefix: dict = dict(img_path=''),
                 on_missing: str = 'fail',
                 **kwargs) -> None:
        split = split if isinstance(split, str) else '+'.join(split)
        super().__init__(
            split=split,
            on_missing=on_missing,
            ann_file=ann_file,
            data_prefix=data_prefix,
            **kwargs)

    def load_samples(self) -> List[dict]:
        karpathy = _load_json(self.ann_file, 'ann_file')
        if not isinstance(karpathy, dict) or 'images' not in karpathy:
            raise ValueError(f'ann_file: {self.ann_file} has no "images" list')
        root = self.data_prefix['img_path']
        check_dir(root, "data_prefix['img_path']")
        splits = self.split.split('+')
        samples = []
        for entry in karpathy['images']:
            if entry.get('split') not in splits:
                continue
            path = osp.join(root, entry.get('filepath', ''), entry['filename'])
            image_id = entry.get('cocoid', osp.splitext(entry['filename'])[0])
            captions = [s['raw'] for s in entry.get('sentences', [])]
            if not captions:
                raise ValueError(f'{self.ann_file}: image {entry["filename"]}'
                                 ' has no sentences')
            samples.append(
                dict(
                    media=[path],
                    caption=captions[0],
                    captions=captions,
                    image_id=image_id,
                    sample_id=image_id,
                    source=f'{self.ann_file} ({entry["filename"]})'))
        return samples


@DATASETS.register_module()
class VQADataset(BaseEvalDataset):
    """VQA-format questions and answers: VQAv2, OK-VQA, TextVQA, VizWiz.

    ``question_file`` is ``{"questions": [{"question_id", "image_id",
    "question"}]}``; ``annotation_file`` is ``{"annotations":
    [{"question_id", "answers": [{"answer"}], ...}]}``, matched by
    ``question_id`` (``answer_type`` and ``question_type`` are kept when
    present). A sample's ``answers`` are the answer strings (for the
    prompts); its ``answer_records`` are copies of the annotation's answer
    dicts (VQAv2's ``{answer, answer_confidence, answer_id}``, VizWiz's
    ``{answer, answer_confidence}``), which
    :func:`~mmflamingo.evaluation.metrics.vqa_accuracy` needs to score as
    the official script does. The VQA multiple-choice format is read too: a
    question's ``multiple_choices`` (and any other extra keys of the
    question, e.g. an ``episode``) are kept, and its annotation's
    ``multiple_choice_answer`` becomes ``label``, its index among the
    choices, for ``task='classification'`` few-shot evaluation. The image is
    ``data_prefix['img_path']/`` + ``image_name.format(image_id=...)``:

    - VQAv2, OK-VQA: ``'COCO_val2014_{image_id:012d}.jpg'`` (or
      ``train2014``);
    - TextVQA: ``'{image_id}.jpg'``;
    - VizWiz: ``'{image_id}'`` (its ids are file names).

    Args:
        question_file (str): The questions json.
        annotation_file (str, optional): The annotations json; None for a
            split without public answers (test-dev). Defaults to None.
        split (str): The split these files are, e.g. ``'train'``, ``'val'``.
            Defaults to ``'val'``.
        image_name (str): Format of an image's file name. Defaults to
            ``'{image_id}.jpg'``.
        data_prefix (dict): ``img_path``: the image directory. Defaults to
            ``dict(img_path='')``.
        on_missing (str): ``'fail'`` or ``'skip'``. Defaults to ``'fail'``.
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self,
                 question_file: str,
                 annotation_file: Optional[str] = None,
                 split: str = 'val',
                 image_name: str = '{image_id}.jpg',
                 data_prefix: dict = dict(img_path=''),
                 on_missing: str = 'fail',
                 **kwargs) -> None:
        self.annotation_file = None if annotation_file is None else osp.join(
            kwargs.get('data_root', ''), annotation_file)
        self.image_name = image_name
        super().__init__(
            split=split,
            on_missing=on_missing,
            ann_file=question_file,
            data_prefix=data_prefix,
            **kwargs)

    def _load_answers(self, question_ids: set) -> Dict[int, dict]:
        annotations = _load_json(self.annotation_file, 'annotation_file')
        answers = {}
        for ann in annotations.get('annotations', []):
            qid = ann.get('question_id')
            if qid not in question_ids:
                raise ValueError(
                    f'{self.annotation_file}: annotation of question_id '
                    f'{qid!r}, which is not in {self.question_file}')
            answers[qid] = ann
        return answers

    @property
    def question_file(self) -> str:
        """The questions json (``ann_file``, under ``data_root``)."""
        return self.ann_file

    def _answer_records(self, ann: dict) -> List[dict]:
        """The annotation's answer dicts, each with a string ``answer``."""
        records = ann.get('answers')
        if not isinstance(records, list) or not all(
                isinstance(r, dict) and isinstance(r.get('answer'), str)
                for r in records):
            raise ValueError(
                f'{self.annotation_file}: the "answers" of question_id '
                f"{ann.get('question_id')!r} must be a list of dicts with a "
                f'string "answer", got {records!r}')
        return [dict(r) for r in records]

    def _choice_index(self, question: dict, ann: dict) -> int:
        """The index of a multiple-choice question's right answer."""
        answer = ann.get('multiple_choice_answer')
        if answer not in question['multiple_choices']:
            raise ValueError(
                f'{self.annotation_file}: the multiple_choice_answer '
                f"{answer!r} of question_id {question['question_id']} is not "
                f"among its multiple_choices {question['multiple_choices']}")
        return question['multiple_choices'].index(answer)

    def load_samples(self) -> List[dict]:
        check_file(self.question_file, 'question_file')
        if self.annotation_file is not None:
            check_file(self.annotation_file, 'annotation_file')
        root = self.data_prefix['img_path']
        check_dir(root, "data_prefix['img_path']")
        questions = _load_json(self.question_file, 'question_file')
        if not isinstance(questions, dict) or 'questions' not in questions:
            raise ValueError(f'question_file: {self.question_file} has no '
                             '"questions" list')
        questions = questions['questions']
        answers = None
        if self.annotation_file is not None:
            answers = self._load_answers({q['question_id'] for q in questions})
        samples = []
        for q in questions:
            qid = q['question_id']
            sample = dict(
                media=[
                    osp.join(root,
                             self.image_name.format(image_id=q['image_id']))
                ],
                question=q['question'],
                question_id=qid,
                image_id=q['image_id'],
                sample_id=qid,
                source=f'{self.question_file} (question_id {qid})')
            for key, value in q.items():
                sample.setdefault(key, value)
            if answers is not None:
                if qid not in answers:
                    raise ValueError(f'{self.annotation_file}: no annotation '
                                     f'for question_id {qid}')
                ann = answers[qid]
                sample['answer_records'] = self._answer_records(ann)
                sample['answers'] = [
                    a['answer'] for a in sample['answer_records']
                ]
                for key in ('answer_type', 'question_type'):
                    if key in ann:
                        sample[key] = ann[key]
                if 'multiple_choices' in q:
                    sample['label'] = self._choice_index(q, ann)
            samples.append(sample)
        return samples


@DATASETS.register_module()
class HatefulMemesDataset(BaseEvalDataset):
    """Hateful Memes: ``{"id", "img", "label", "text"}`` per JSON line.

    The image is ``data_prefix['img_path']/`` + the base name of ``img``
    (``"img/01235.png"``), as OpenFlamingo reads it. ``class_name`` is
    ``'yes'`` for label 1 and ``'no'`` for 0, the words the prompt scores.
    Test files without labels give samples without ``label``/``class_name``.

    Args:
        ann_file (str): The split's ``.jsonl`` (``train.jsonl``,
            ``dev_seen.jsonl``, ...).
        split (str): The split the file is. Defaults to ``'test'``.
        data_prefix (dict): ``img_path``: the image directory. Defaults to
            ``dict(img_path='')``.
        on_missing (str): ``'fail'`` or ``'skip'``. Defaults to ``'fail'``.
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments.
    """

    CLASS_NAMES = ('no', 'yes')

    def __init__(self,
                 ann_file: str,
                 split: str = 'test',
                 data_prefix: dict = dict(img_path=''),
                 on_missing: str = 'fail',
                 **kwargs) -> None:
        super().__init__(
            split=split,
            on_missing=on_missing,
            ann_file=ann_file,
            data_prefix=data_prefix,
            **kwargs)

    def load_samples(self) -> List[dict]:
        check_file(self.ann_file, 'ann_file')
        root = self.data_prefix['img_path']
        check_dir(root, "data_prefix['img_path']")
        samples = []
        with open(self.ann_file, encoding='utf-8') as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    sample = dict(
                        media=[osp.join(root, osp.basename(record['img']))],
                        text=record['text'],
                        id=record['id'],
                        sample_id=record['id'],
                        source=f'{self.ann_file}:{line_no}')
                except (ValueError, KeyError, TypeError) as error:
                    raise ValueError(
                        f'{self.ann_file}:{line_no}: expected a JSON object '
                        f'with "id", "img" and "text" ({error!r})') from None
                if 'label' in record:
                    sample['label'] = int(record['label'])
                    sample['class_name'] = self.CLASS_NAMES[sample['label']]
                samples.append(sample)
        return samples


@DATASETS.register_module()
class ImageFolderClassification(BaseEvalDataset):
    """An ImageNet-style folder: ``data_root/split/<class dir>/<image>``.

    Classes are the sub-directories in sorted order (ImageNet's WordNet ids,
    as torchvision's ``ImageFolder``); ``class_names_file`` has one
    human-readable name per line, the i-th naming the i-th class (for
    ImageNet, :data:`IMAGENET_CLASS_NAMES_FILE`, the names OpenFlamingo
    ranks).
    ``sample_id`` is the image's path relative to the split directory.

    Args:
        class_names_file (str): The class names, one per line.
        split (str): The split directory. Defaults to ``'val'``.
        on_missing (str): ``'fail'`` or ``'skip'``. Defaults to ``'fail'``.
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments
            (``data_root`` is the folder holding the split directories).
    """

    def __init__(self,
                 class_names_file: str,
                 split: str = 'val',
                 on_missing: str = 'fail',
                 **kwargs) -> None:
        self.class_names_file = osp.join(
            kwargs.get('data_root', ''), class_names_file)
        super().__init__(split=split, on_missing=on_missing, **kwargs)

    def load_samples(self) -> List[dict]:
        check_file(self.class_names_file, 'class_names_file')
        with open(self.class_names_file, encoding='utf-8') as f:
            class_names = [line.strip() for line in f if line.strip()]
        split_dir = osp.join(self.data_root, self.split)
        check_dir(split_dir, 'data_root/split')
        class_dirs = sorted(
            d for d in os.listdir(split_dir)
            if osp.isdir(osp.join(split_dir, d)))
        if len(class_dirs) != len(class_names):
            raise ValueError(
                f'{self.class_names_file} names {len(class_names)} classes '
                f'but {split_dir} has {len(class_dirs)} class directories')
        self._metainfo['classes'] = tuple(class_names)
        samples = []
        for label, class_dir in enumerate(class_dirs):
            for name in sorted(os.listdir(osp.join(split_dir, class_dir))):
                if not name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                sample_id = f'{class_dir}/{name}'
                samples.append(
                    dict(
                        media=[osp.join(split_dir, sample_id)],
                        label=label,
                        class_name=class_names[label],
                        sample_id=sample_id,
                        source=osp.join(split_dir, sample_id)))
        return samples
