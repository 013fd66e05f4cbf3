"""mmflamingo.compat: MMPretrain without its multimodal models, and the
after-import hook that switches them off."""
import subprocess
import sys

from mmflamingo.compat import after_import

# In a fresh interpreter: import mmflamingo (no MMPretrain yet), then
# MMPretrain's models, the ViT, its registries and structures.
MMPRETRAIN_AFTER_MMFLAMINGO = '''
import sys
import mmflamingo
assert not any(m.startswith("mmpretrain") for m in sys.modules), "eager"
import mmpretrain.models
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from mmpretrain.utils import dependency
assert dependency.WITH_MULTIMODAL is False
assert MODELS.get("VisionTransformer").__name__ == "VisionTransformer"
# MMPretrain's placeholder: a function that raises when built
assert not isinstance(MODELS.get("BlipCaption"), type)
import mmflamingo.models
from mmflamingo.registry import MODELS as OURS
assert OURS.get("Flamingo").__name__ == "Flamingo"
'''


def test_mmpretrain_models_import_after_mmflamingo():
    """On any transformers, 5.x included (where MMPretrain's BLIP fails)."""
    result = subprocess.run(
        [sys.executable, '-c', MMPRETRAIN_AFTER_MMFLAMINGO],
        capture_output=True,
        text=True,
        check=False)
    assert result.returncode == 0, result.stderr[-3000:]


def test_after_import_runs_once_the_module_is_imported(tmp_path, monkeypatch):
    (tmp_path / 'compat_probe_module.py').write_text('VALUE = 1\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    after_import('compat_probe_module', lambda m: seen.append(m.VALUE))
    assert seen == []
    import compat_probe_module
    assert seen == [1]
    # the hook left sys.meta_path; an imported module gets it at once
    assert not any(
        getattr(f, 'name', None) == 'compat_probe_module'
        for f in sys.meta_path)
    after_import('compat_probe_module', lambda m: seen.append(m.VALUE + 1))
    assert seen == [1, 2]
    del sys.modules['compat_probe_module'], compat_probe_module
