"""Few-shot prompts: exact strings, OpenFlamingo's included.

OpenFlamingo's prompt functions live in ``open_flamingo/eval/models/
open_flamingo.py``, which the installed package does not ship (and its
``evaluate.py`` needs open_clip weights and a top-level ``rices`` module), so
its strings are written out here. They come from::

    get_caption_prompt(caption) = "<image>Output:{caption}<|endofchunk|>",
        and "<image>Output:" without a caption;
    get_vqa_prompt(question, answer)
        = "<image>Question:{question} Short answer:{answer}<|endofchunk|>",
        and "<image>Question:{question} Short answer:" without an answer;
    get_imagenet_prompt(label) = "<image>Output:{label}<|endofchunk|>";
    get_hateful_memes_prompt(text, label) = "<image>is an image with:
        '{text}' written on it. Is it hateful? Answer:{label}<|endofchunk|>";

and ``evaluate.py`` joins caption and VQA demos as
``"".join(demo_prompt + "\\n" for demo)`` (the caption stripped, the answer
``answers[0]``), classification demos with ``"".join``, removes ``<image>``
from the demos of a 0-shot prompt (two demos), and appends the query.
"""
import pytest

from mmflamingo.evaluation.prompts import FewShotPromptBuilder, select_answer

EOC = '<|endofchunk|>'


def caption_demo(i):
    return dict(caption=f' caption {i}. ', media=[f'c{i}.jpg'])


def vqa_demo(i):
    answers = [f'first {i}'] + [f'common {i}'] * 5 + ['x'] * 4
    return dict(question=f'what is {i}?', answers=answers, media=[f'v{i}.jpg'])


def test_caption_prompts():
    builder = FewShotPromptBuilder('caption')
    query = dict(caption='the reference', media=['q.jpg'])
    demos = [caption_demo(i) for i in range(4)]
    prompt, media = builder.build(query, demos, num_shots=4)
    assert prompt == (f'<image>Output:caption 0.{EOC}\n'
                      f'<image>Output:caption 1.{EOC}\n'
                      f'<image>Output:caption 2.{EOC}\n'
                      f'<image>Output:caption 3.{EOC}\n'
                      '<image>Output:')
    assert media == ['c0.jpg', 'c1.jpg', 'c2.jpg', 'c3.jpg', 'q.jpg']

    # 0 shots: two text-only demos, only the query's image
    assert builder.num_demos(0) == 2
    prompt, media = builder.build(query, demos[:2], num_shots=0)
    assert prompt == (f'Output:caption 0.{EOC}\nOutput:caption 1.{EOC}\n'
                      '<image>Output:')
    assert media == ['q.jpg']


def test_vqa_prompts():
    builder = FewShotPromptBuilder('vqa')
    query = dict(question='is it red?', answers=['yes'] * 10, media=['q.jpg'])
    demos = [vqa_demo(i) for i in range(4)]
    prompt, media = builder.build(query, demos, num_shots=4)
    assert prompt == ''.join(
        f'<image>Question:what is {i}? Short answer:first {i}{EOC}\n'
        for i in range(4)) + '<image>Question:is it red? Short answer:'
    assert media == ['v0.jpg', 'v1.jpg', 'v2.jpg', 'v3.jpg', 'q.jpg']

    prompt, media = builder.build(query, demos[:2], num_shots=0)
    assert prompt == (f'Question:what is 0? Short answer:first 0{EOC}\n'
                      f'Question:what is 1? Short answer:first 1{EOC}\n'
                      '<image>Question:is it red? Short answer:')
    assert media == ['q.jpg']

    common = FewShotPromptBuilder('vqa', answer_mode='most_common')
    prompt, _ = common.build(query, demos[:1], num_shots=1)
    assert prompt.startswith(
        f'<image>Question:what is 0? Short answer:common 0{EOC}\n')


def test_select_answer():
    assert select_answer(['a', 'b', 'b']) == 'a'
    assert select_answer(['a', 'b', 'b'], 'most_common') == 'b'
    assert select_answer(['c', 'a', 'a', 'c'], 'most_common') == 'c'
    with pytest.raises(ValueError, match='most_common'):
        select_answer(['a'], 'vote')


def test_classification_prompts():
    imagenet = FewShotPromptBuilder('imagenet')
    demos = [
        dict(class_name=name, media=[f'{name}.jpg'])
        for name in ('goldfish', 'tench', 'robin', 'jay')
    ]
    query = dict(class_name='hidden', media=['q.jpg'])
    prompt, media = imagenet.build(query, demos, num_shots=4)
    assert prompt == (f'<image>Output:goldfish{EOC}<image>Output:tench{EOC}'
                      f'<image>Output:robin{EOC}<image>Output:jay{EOC}'
                      '<image>Output:')
    assert len(media) == 5
    prompt, media = imagenet.build(query, demos[:2], num_shots=0)
    assert prompt == f'Output:goldfish{EOC}Output:tench{EOC}<image>Output:'
    assert media == ['q.jpg']

    memes = FewShotPromptBuilder('hateful_memes')
    demos = [
        dict(text=f'meme {i}', class_name=c, media=[f'm{i}.png'])
        for i, c in enumerate(('yes', 'no', 'no', 'yes'))
    ]
    query = dict(text='the query', class_name='no', media=['q.png'])
    prompt, _ = memes.build(query, demos, num_shots=4)
    assert prompt == ''.join(
        f"<image>is an image with: 'meme {i}' written on it. Is it hateful? "
        f'Answer:{c}{EOC}'
        for i, c in enumerate(('yes', 'no', 'no', 'yes'))) + (
            "<image>is an image with: 'the query' written on it. "
            'Is it hateful? Answer:')
    prompt, media = memes.build(query, demos[:2], num_shots=0)
    assert prompt == (
        "is an image with: 'meme 0' written on it. Is it hateful? "
        f"Answer:yes{EOC}is an image with: 'meme 1' written on it. "
        f'Is it hateful? Answer:no{EOC}'
        "<image>is an image with: 'the query' written on it. "
        'Is it hateful? Answer:')
    assert media == ['q.png']


@pytest.mark.parametrize(
    'task, demo, query, openflamingo_demo, openflamingo_query',
    [('caption', dict(caption='A cat.'), {}, f'<image>Output:A cat.{EOC}',
      '<image>Output:'),
     ('vqa', dict(question='Why?', answers=['no', 'yes']),
      dict(question='Who?'), f'<image>Question:Why? Short answer:no{EOC}',
      '<image>Question:Who? Short answer:'),
     ('imagenet', dict(class_name='tench'), {}, f'<image>Output:tench{EOC}',
      '<image>Output:'),
     ('hateful_memes', dict(text='hi', class_name='no'), dict(text='yo'),
      f"<image>is an image with: 'hi' written on it. Is it hateful? "
      f'Answer:no{EOC}', "<image>is an image with: 'yo' written on it. "
      'Is it hateful? Answer:')])
def test_defaults_are_openflamingo_strings(task, demo, query,
                                           openflamingo_demo,
                                           openflamingo_query):
    builder = FewShotPromptBuilder(task)
    assert builder.format_demo(demo) == openflamingo_demo
    assert builder.format_query(query) == openflamingo_query


def test_custom_templates_and_errors():
    builder = FewShotPromptBuilder(
        demo_template='<image>A photo of a {class_name}.<|endofchunk|>',
        query_template='<image>A photo of a')
    demo = dict(class_name='cat', media=['cat.jpg'])
    prompt, _ = builder.build(dict(media=['q.jpg']), [demo], num_shots=1)
    assert prompt == f'<image>A photo of a cat.{EOC}<image>A photo of a'
    with pytest.raises(KeyError, match='class_name'):
        builder.format_demo(dict(caption='no class'))
    with pytest.raises(ValueError, match='takes 2 demos'):
        builder.build(dict(media=[]), [demo], num_shots=0)
    with pytest.raises(KeyError, match='unknown prompt task'):
        FewShotPromptBuilder('retrieval')
    with pytest.raises(ValueError, match='both demo_template'):
        FewShotPromptBuilder(demo_template='{caption}')
