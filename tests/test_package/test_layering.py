"""The package's layering: the vocabulary is the lowest layer, and the data,
evaluation and training code never import the models package."""
import ast
import os
import os.path as osp

import mmflamingo

PACKAGE = osp.dirname(mmflamingo.__file__)
# the parts below models/: they get models as arguments, never import them
BELOW_MODELS = ('tokens.py', 'checkpoint_io.py', 'registry.py', 'datasets',
                'evaluation', 'engine', 'shapes_world')


def _imports(path):
    """Absolute module names imported by a file (relative ones resolved)."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
    package = osp.relpath(osp.dirname(path), osp.dirname(PACKAGE))
    parts = package.split(os.sep)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[:len(parts) - node.level + 1]
                module = '.'.join(base +
                                  ([node.module] if node.module else []))
            else:
                module = node.module
            yield module
            yield from (f'{module}.{alias.name}' for alias in node.names)


def _files(part):
    path = osp.join(PACKAGE, part)
    if path.endswith('.py'):
        yield path
        return
    for root, _, names in os.walk(path):
        yield from (osp.join(root, n) for n in names if n.endswith('.py'))


def test_models_do_not_import_the_runner_glue():
    # engine/ (hooks, loops) drives models; models never need it
    offenders = [(osp.relpath(path, PACKAGE), module)
                 for path in _files('models') for module in _imports(path)
                 if module.startswith('mmflamingo.engine')]
    assert offenders == []


def test_nothing_below_models_imports_models():
    offenders = [(osp.relpath(path, PACKAGE), module) for part in BELOW_MODELS
                 for path in _files(part) for module in _imports(path)
                 if module == 'mmflamingo.models'
                 or module.startswith('mmflamingo.models.')]
    assert offenders == []


def test_the_checker_sees_relative_and_absolute_imports():
    # a control: the checker resolves both spellings of an import
    media = osp.join(PACKAGE, 'datasets', 'transforms', 'media.py')
    assert any(m.startswith('mmflamingo.registry') for m in _imports(media))
    head = osp.join(PACKAGE, 'models', 'heads', 'flamingo_lm_head.py')
    imports = set(_imports(head))
    assert 'mmflamingo.models.utils' in imports  # from ..utils import ...
    assert 'mmflamingo.tokens.FlamingoTokens' in imports


def test_the_vocabulary_has_one_home():
    from mmflamingo import tokens
    from mmflamingo.datasets import sequence_dataset
    from mmflamingo.evaluation import prompts
    assert prompts.MEDIA_TOKEN is tokens.MEDIA_TOKEN
    assert sequence_dataset.build_tokenizer is tokens.build_tokenizer
    assert tokens.flamingo_tokens_in('a <image> b <|endofchunk|>') == [
        '<image>', '<|endofchunk|>'
    ]
    assert tokens.flamingo_tokens_in('an image of a chunk') == []
