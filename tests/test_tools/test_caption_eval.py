"""tools/analysis/caption_eval.py and evaluate_caption_files: COCO caption
metrics of results files in the COCO caption format."""
import json
import os.path as osp
import subprocess
import sys

import pytest

from mmflamingo.evaluation.offline_eval import evaluate_caption_files

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'analysis', 'caption_eval.py')

REFERENCES = {
    1: ['A red circle on a white background.', 'a red circle'],
    2: ['Two blue squares side by side.', 'two small blue squares'],
    7: ['A green triangle above a yellow star.', 'a triangle and a star'],
}
CAPTIONS = {
    1: 'A red circle on a white background.',
    2: 'two blue squares',
    7: 'a yellow star',
}


def write_json(path, data) -> str:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f)
    return str(path)


def coco_annotations(references) -> dict:
    return dict(
        images=[dict(id=i, file_name=f'{i}.jpg') for i in references],
        annotations=[
            dict(id=10 * i + j, image_id=i, caption=c)
            for i, captions in references.items()
            for j, c in enumerate(captions)
        ])


@pytest.fixture
def caption_files(tmp_path):
    return dict(
        annotations=write_json(tmp_path / 'captions.json',
                               coco_annotations(REFERENCES)),
        results=write_json(
            tmp_path / 'results.json',
            [dict(image_id=i, caption=c) for i, c in CAPTIONS.items()]))


def coco_caption_eval(references, captions) -> dict:
    """pycocoevalcap's COCOEvalCap.evaluate without SPICE: references and
    captions tokenised apart, then each scorer, x100."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({
        i: [dict(caption=c) for c in refs]
        for i, refs in references.items()
    })
    res = tokenizer.tokenize({
        i: [dict(caption=c)]
        for i, c in captions.items()
    })
    return {
        'CIDEr': 100 * Cider().compute_score(gts, res)[0],
        'BLEU-4': 100 * Bleu(4).compute_score(gts, res, verbose=0)[0][3],
        'METEOR': 100 * Meteor().compute_score(gts, res)[0],
        'ROUGE-L': 100 * Rouge().compute_score(gts, res)[0],
    }


@pytest.fixture(scope='module')
def expected():
    return coco_caption_eval(REFERENCES, CAPTIONS)


def test_evaluate_caption_files(caption_files, expected, tmp_path):
    scores = evaluate_caption_files(caption_files['annotations'],
                                    caption_files['results'])
    assert scores == pytest.approx(expected)
    assert 0 < scores['CIDEr'] and 0 < scores['BLEU-4'] < 100
    # captions equal to a reference: BLEU-4 and ROUGE-L are 100
    perfect = write_json(
        tmp_path / 'perfect.json',
        [dict(image_id=i, caption=refs[0]) for i, refs in REFERENCES.items()])
    scores = evaluate_caption_files(caption_files['annotations'], perfect)
    assert scores['BLEU-4'] == pytest.approx(100)
    assert scores['ROUGE-L'] == pytest.approx(100)


def test_caption_eval_tool(caption_files, expected):
    result = subprocess.run([
        sys.executable, TOOL, caption_files['annotations'],
        caption_files['results']
    ],
                            capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-4:] == [
        f'{name}: {expected[name]:.2f}'
        for name in ('CIDEr', 'BLEU-4', 'METEOR', 'ROUGE-L')
    ]


def test_errors(caption_files, tmp_path):
    annotations = caption_files['annotations']
    fewer = write_json(tmp_path / 'fewer.json',
                       [dict(image_id=1, caption='a red circle')])
    with pytest.raises(
            ValueError,
            match='fewer.json has no entry for image_id 2 of '
            '.*captions.json'):
        evaluate_caption_files(annotations, fewer)
    more = write_json(
        tmp_path / 'more.json',
        [dict(image_id=i, caption='a shape') for i in (1, 2, 7, 8)])
    with pytest.raises(
            ValueError,
            match='captions.json has no entry for image_id 8 of '
            '.*more.json'):
        evaluate_caption_files(annotations, more)
    twice = write_json(
        tmp_path / 'twice.json',
        [dict(image_id=i, caption='a shape') for i in (1, 2, 7, 7)])
    with pytest.raises(ValueError, match='twice.json: image_id 7 appears'):
        evaluate_caption_files(annotations, twice)
    bad = write_json(tmp_path / 'bad.json',
                     [dict(image_id=i, caption=None) for i in (1, 2, 7)])
    with pytest.raises(
            ValueError, match='bad.json: the "caption" of image_id 1'):
        evaluate_caption_files(annotations, bad)
    no_caption = coco_annotations({**REFERENCES, 9: []})
    no_caption_file = write_json(tmp_path / 'no_caption.json', no_caption)
    with pytest.raises(
            ValueError, match='no_caption.json: image_id 9 has no caption'):
        evaluate_caption_files(no_caption_file, caption_files['results'])
    no_caption['annotations'].append(dict(image_id=5, caption='x'))
    stray = write_json(tmp_path / 'stray.json', no_caption)
    with pytest.raises(
            ValueError, match='stray.json: annotation 6 is of '
            'image_id 5'):
        evaluate_caption_files(stray, caption_files['results'])
    with pytest.raises(
            ValueError,
            match='results.json must be a JSON '
            'object with a "images" list'):
        evaluate_caption_files(caption_files['results'], fewer)
    broken = tmp_path / 'broken.json'
    broken.write_text('[{"image_id": 1')
    with pytest.raises(ValueError, match='broken.json is not valid JSON'):
        evaluate_caption_files(annotations, str(broken))
