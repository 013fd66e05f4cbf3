"""tools/analysis/vqa_eval.py and evaluate_vqa_files: the official VQA
accuracy of results files in the official formats."""
import json
import os.path as osp
import subprocess
import sys

import pytest

from mmflamingo.evaluation.offline_eval import evaluate_vqa_files

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'analysis', 'vqa_eval.py')


def write_json(path, data) -> str:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f)
    return str(path)


def records(answers):
    return [
        dict(answer=a, answer_confidence='yes', answer_id=i + 1)
        for i, a in enumerate(answers)
    ]


# question_id: (answer_type, annotators' answers, the answer, its accuracy)
QUESTIONS = {
    1: ('yes/no', ['yes'] * 10, 'yes', 100.),
    2: ('yes/no', ['yes'] * 10, 'Yes', 0.),  # identical: not normalised
    3: ('number', ['two'] * 2 + ['3'] * 8, '2', 60.),  # 2 of 10 match
    4: ('other', ['x', 'y', 'z'], 'x', 22.22),  # 0, 1/3, 1/3 -> 2/9
}


@pytest.fixture
def vqa_files(tmp_path):
    questions = dict(
        task_type='Open-Ended',
        questions=[
            dict(question_id=q, image_id=q, question='?') for q in QUESTIONS
        ])
    annotations = dict(annotations=[
        dict(
            question_id=q,
            image_id=q,
            question_type='what',
            answer_type=answer_type,
            answers=records(answers))
        for q, (answer_type, answers, _, _) in QUESTIONS.items()
    ])
    results = [
        dict(question_id=q, answer=answer)
        for q, (_, _, answer, _) in QUESTIONS.items()
    ]
    return dict(
        questions=write_json(tmp_path / 'questions.json', questions),
        annotations=write_json(tmp_path / 'annotations.json', annotations),
        results=write_json(tmp_path / 'results.json', results),
        data=(questions, annotations, results))


def _files(vqa_files) -> list:
    return [vqa_files[k] for k in ('questions', 'annotations', 'results')]


def test_evaluate_vqa_files(vqa_files):
    scores = evaluate_vqa_files(*_files(vqa_files))
    assert scores['per_question'] == {
        q: acc
        for q, (_, _, _, acc) in QUESTIONS.items()
    }
    # (1 + 0 + 0.6 + 2/9) / 4 = 0.45556; yes/no (1 + 0) / 2; number 0.6
    assert scores['metrics'] == {
        'accuracy': 45.56,
        'accuracy/number': 60.,
        'accuracy/other': 22.22,
        'accuracy/yes/no': 50.,
    }


def test_vqa_eval_tool(vqa_files, tmp_path):
    out = str(tmp_path / 'per_question.json')
    result = subprocess.run(
        [sys.executable, TOOL, *_files(vqa_files), '--out', out],
        capture_output=True,
        text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-4:] == [
        'accuracy: 45.56', 'accuracy/number: 60.00', 'accuracy/other: 22.22',
        'accuracy/yes/no: 50.00'
    ]
    with open(out) as f:
        assert json.load(f) == {'1': 100., '2': 0., '3': 60., '4': 22.22}
    # an error is one line naming the file, not a traceback
    questions, annotations, _ = _files(vqa_files)
    result = subprocess.run(
        [sys.executable, TOOL, questions, annotations, questions],
        capture_output=True,
        text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f'vqa_eval.py: {questions} must be a JSON list of objects')


def test_multiple_choice_answers_must_be_choices(vqa_files, tmp_path):
    questions, _, _ = vqa_files['data']
    for q in questions['questions']:
        q['multiple_choices'] = ['yes', 'no', '2', 'x']
    questions['task_type'] = 'Multiple Choice'
    mc = write_json(tmp_path / 'mc.json', questions)
    with pytest.raises(ValueError, match="answer 'Yes' of question_id 2"):
        evaluate_vqa_files(mc, vqa_files['annotations'], vqa_files['results'])


def test_missing_ids(vqa_files, tmp_path):
    questions, _, results = vqa_files['data']
    cases = [
        ('fewer.json', 'results', results[:-1],
         'fewer.json has no entry for question_id 4 of .*annotations.json'),
        ('more.json', 'results', results + [dict(question_id=9, answer='x')],
         'annotations.json has no entry for question_id 9 of .*more.json'),
        ('twice.json', 'results', results + results[:1],
         'twice.json: question_id 1 appears twice'),
        ('few_questions.json', 'questions',
         dict(questions=questions['questions'][1:]),
         'few_questions.json has no entry for question_id 1'),
    ]
    for name, key, content, match in cases:
        files = dict(vqa_files)
        files[key] = write_json(tmp_path / name, content)
        with pytest.raises(ValueError, match=match):
            evaluate_vqa_files(*_files(files))


MALFORMED = [
    ('results', '[{"question_id": 1, "answer": "yes"}',
     'results.json is not valid JSON'),
    ('results', '{"question_id": 1}', 'results.json must be a JSON list'),
    ('results', [dict(question_id=q, answer=7) for q in QUESTIONS],
     'results.json: the "answer" of question_id 1 must be a string'),
    ('results', [dict(answer='yes')],
     'results.json: entry 0 has no "question_id"'),
    ('annotations', [],
     'annotations.json must be a JSON object with a "annotations" list'),
    ('annotations',
     dict(annotations=[dict(question_id=q, answers=[{}]) for q in QUESTIONS]),
     'annotations.json: question_id 1: .*string "answer"'),
    ('questions', dict(questions=[1]),
     'questions.json: entry 0 is not a JSON object'),
]


@pytest.mark.parametrize('name,content,match', MALFORMED)
def test_malformed_files(vqa_files, name, content, match):
    with open(vqa_files[name], 'w') as f:
        f.write(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ValueError, match=match):
        evaluate_vqa_files(*_files(vqa_files))
