"""tools/shapes_recipe.py --quick: every stage of the miniature recipe runs
through the real tools (a few iterations each, on a tiny world), finished
stages are reused, and the summary is written: on the shipped pretrained
parts (the main job) and, with --from-scratch, on parts it trains itself."""
import json
import os.path as osp
import re
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'shapes_recipe.py')
TASKS = ('caption', 'vqa', 'binding', 'video')

pytestmark = pytest.mark.workflow


def run_recipe(tmp_path, *extra):
    result = subprocess.run([
        sys.executable, TOOL, '--quick', '--data-root',
        str(tmp_path / 'shapes'), '--work-dir',
        str(tmp_path / 'work'), *extra
    ],
                            capture_output=True,
                            text=True,
                            timeout=900)
    assert result.returncode == 0, (
        result.stdout[-3000:] + result.stderr[-5000:])
    return result.stdout


def check_summary(work):
    with open(work / 'results.json') as f:
        summary = json.load(f)
    assert set(summary['results']) == {
        f'{task}/{selection}'
        for task in TASKS
        for selection in ('random', 'rices')
    }
    for entry in summary['results'].values():
        assert sorted(map(int, entry['scores'])) == [0, 2]
        for shots, score in entry['scores'].items():
            low, high = entry['ci95'][shots]
            assert 0 <= low <= score <= high <= 100 or entry[
                'metric'] == 'caption/CIDEr'
    assert 20 < summary['binding_chance'] < 50
    assert set(summary['baselines']) == {'binding', 'vqa', 'video'}
    with open(work / 'results.png', 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    with open(work / 'lm_probes.json') as f:
        probes = json.load(f)
    assert probes['repeat_first'] > 0 and 'binding_word_8shot' in probes


def test_quick_recipe_on_the_shipped_parts(tmp_path):
    work = tmp_path / 'work'
    out = run_recipe(tmp_path)
    for stage in ('world', 'flamingo', 'eval caption random', 'eval vqa rices',
                  'eval binding rices', 'eval video rices'):
        assert f'=== stage: {stage} ===' in out
    for stage in ('tokenizer', 'vision', 'lm-induction', 'lm-text',
                  'lm-binding', 'lm'):
        assert f'=== stage: {stage}' not in out
    assert 'LM probes (held-out text): copy' in out
    assert osp.isfile(work / 'flamingo' / 'flamingo-tiny_shapes.pth')
    for task in TASKS:
        assert osp.isfile(work / 'rices' / f'{task}_support.pth')
    check_summary(work)
    assert '| binding | classification/accuracy/top1 | rices |' in out
    # VQA's support images are captioning's: their features are taken over
    # (the video task's, loaded otherwise, are computed)
    assert re.search(r'(\d+) of \1 media taken from --reuse, 0 encoded',
                     out), out

    # a re-run reuses every finished stage; --redo reruns one and later ones
    out = run_recipe(tmp_path)
    assert '=== stage: flamingo: finished before, reused ===' in out
    out = run_recipe(tmp_path, '--redo', 'flamingo', '--cfg-options',
                     'optim_wrapper.optimizer.lr=0.000321')
    assert '=== stage: flamingo ===' in out
    # --cfg-options reach the Flamingo training config
    with open(work / 'flamingo' / 'flamingo-tiny_shapes_mixture.py') as f:
        assert 'lr=0.000321' in f.read()
    assert '=== stage: eval caption random ===' in out
    assert '=== stage: world: finished before, reused ===' in out


def test_quick_recipe_from_scratch(tmp_path):
    work = tmp_path / 'work'
    out = run_recipe(tmp_path, '--from-scratch')
    for stage in ('world', 'tokenizer', 'vision', 'lm-induction', 'lm-text',
                  'lm-binding', 'lm', 'flamingo', 'eval video random'):
        assert f'=== stage: {stage} ===' in out
    # the LM and vision encoder trained here, not the shipped ones
    assert osp.isfile(work / 'vision' / 'hf' / 'config.json')
    assert osp.isfile(work / 'lm' / 'hf' / 'tokenizer.json')
    with open(work / 'lm' / 'hf' / 'tokenizer.json') as f:
        assert '<|endofchunk|>' in f.read()
    check_summary(work)
