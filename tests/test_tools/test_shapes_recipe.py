"""tools/shapes_recipe.py --quick: every stage of the miniature recipe runs
through the real tools (a few iterations each, on a tiny world), finished
stages are reused, and the summary is written."""
import json
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'shapes_recipe.py')


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


def test_quick_recipe(tmp_path):
    work = tmp_path / 'work'
    out = run_recipe(tmp_path)
    for stage in ('world', 'tokenizer', 'vision', 'lm', 'flamingo',
                  'eval caption random', 'eval vqa rices',
                  'eval binding rices'):
        assert f'=== stage: {stage} ===' in out
    # the stages' outputs: HF exports, published weights, few-shot results
    assert osp.isfile(work / 'vision' / 'hf' / 'config.json')
    assert osp.isfile(work / 'lm' / 'hf' / 'tokenizer.json')
    assert osp.isfile(work / 'flamingo' / 'flamingo-tiny_shapes.pth')
    for task in ('caption', 'vqa', 'binding'):
        assert osp.isfile(work / 'rices' / f'{task}_support.pth')
    with open(work / 'results.json') as f:
        summary = json.load(f)
    assert set(summary['results']) == {
        f'{task}/{selection}'
        for task in ('caption', 'vqa', 'binding')
        for selection in ('random', 'rices')
    }
    for entry in summary['results'].values():
        assert sorted(map(int, entry['scores'])) == [0, 2]
        assert all(0 <= v <= 100 for v in entry['scores'].values())
    assert 20 < summary['binding_chance'] < 50
    with open(work / 'results.png', 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert '| binding | classification/accuracy/top1 | rices |' in out

    # a re-run reuses every finished stage; --redo reruns one and later ones
    out = run_recipe(tmp_path)
    assert '=== stage: flamingo: finished before, reused ===' in out
    assert '=== stage: vision ===' not in out
    out = run_recipe(tmp_path, '--redo', 'flamingo')
    assert '=== stage: flamingo ===' in out
    assert '=== stage: eval caption random ===' in out
    assert '=== stage: lm: finished before, reused ===' in out
