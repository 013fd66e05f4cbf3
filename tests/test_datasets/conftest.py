"""Small data files written by the dataset tests, and OpenFlamingo's data
processing as a reference."""
import importlib.util
import io
import logging
import os.path as osp
import sys
import tarfile
import types

import pytest
from mmengine.logging import MMLogger
from PIL import Image


def _png_bytes(color=(255, 0, 0), size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new('RGB', (size, size), color).save(buffer, format='PNG')
    return buffer.getvalue()


def _write_tar(path, members: dict) -> str:
    with tarfile.open(path, 'w') as tar:
        for name, data in members.items():
            if isinstance(data, str):
                data = data.encode('utf-8')
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


@pytest.fixture(scope='session')
def png_bytes():
    """``png_bytes(color=(255, 0, 0), size=16)``: a PNG of one colour."""
    return _png_bytes


@pytest.fixture(scope='session')
def write_tar():
    """``write_tar(path, {name: bytes | str})``: an uncompressed tar, its
    members in order; returns the path as a string."""
    return _write_tar


@pytest.fixture
def warnings_logged():
    """The messages of warnings logged through mmengine's current logger."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.fixture(scope='session')
def openflamingo_data():
    """OpenFlamingo's ``train/data.py`` (``preprocess_interleaved``,
    ``preprocess_laion_text``), loaded without ``webdataset``, which only
    its loaders use."""
    import open_flamingo  # the reference: requirements/reference.txt
    path = osp.join(osp.dirname(open_flamingo.__file__), 'train', 'data.py')
    stubs = {
        name: types.ModuleType(name)
        for name in ('webdataset', 'data_utils') if name not in sys.modules
    }
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location(
            'openflamingo_train_data', path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        for name in stubs:
            del sys.modules[name]
    return module
