"""Training fixtures: the toy mixture on disk, child configs that point the
tiny toy-mixture configs at it, and ``tools/train.py`` run in a subprocess.
"""
import glob
import json
import os
import os.path as osp
import socket
import subprocess
import sys
import time
from typing import List, Optional, Sequence

import pytest

from mmflamingo.testing.toy_data import write_toy_mixture

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RUNNER_CONFIG = osp.join(REPO_ROOT, 'configs', 'flamingo',
                         'flamingo_tinyclip-tinyllama_1xb2_toy-mixture.py')
ZERO1_CONFIG = osp.join(
    REPO_ROOT, 'configs', 'flamingo',
    'flamingo_tinyclip-tinyllama_1xb2-zero1-bf16_toy-mixture.py')

# Overriding `toy_root` does not reach the dataset dicts already built from
# it in the base file, so the child config sets every path itself. Every
# iteration is logged, unsmoothed (mmengine averages `loss` over 10 by
# default), so that the rows of scalars.json are per-iteration values.
_CHILD_CONFIG = """\
_base_ = [{base!r}]
toy_root = {toy_root!r}
tokenizer = dict(pretrained={tokenizer!r})
model = dict(tokenizer=tokenizer)
train_dataloader = dict(
    datasets=dict(
        interleaved=dict(
            dataset=dict(data_root=toy_root, tokenizer=tokenizer)),
        pairs=dict(dataset=dict(data_root=toy_root, tokenizer=tokenizer)),
        video=dict(dataset=dict(data_root=toy_root, tokenizer=tokenizer))))
log_processor = dict(window_size=1)
default_hooks = dict(logger=dict(interval=1))
"""


class TrainResult:
    """A finished ``tools/train.py`` run.

    Attributes:
        returncode (int): The exit status (negative: killed by that signal).
        stderr (str): What it wrote to stderr.
        output (str): stdout, then stderr.
        rows (list[dict]): The run's ``vis_data/scalars.json``, one dict per
            logged iteration (empty when it logged none).
    """

    def __init__(self, returncode: int, stdout: str, stderr: str,
                 rows: List[dict]) -> None:
        self.returncode = returncode
        self.stderr = stderr
        self.output = stdout + stderr
        self.rows = rows

    def check(self) -> 'TrainResult':
        """Assert that the run succeeded, showing its output otherwise."""
        assert self.returncode == 0, self.output[-6000:]
        return self


class TrainProcess:
    """``tools/train.py`` running in a subprocess (cwd: the repository)."""

    def __init__(self, config: str, work_dir: str, args: Sequence[str],
                 nproc: int, log_prefix: str) -> None:
        self.work_dir = work_dir
        self._runs_before = set(self._run_dirs())
        command = [sys.executable]
        if nproc > 1:
            command += [
                '-m', 'torch.distributed.run', '--nproc_per_node',
                str(nproc), '--master_port',
                str(_free_port())
            ]
        command += ['tools/train.py', config, '--work-dir', work_dir, *args]
        if nproc > 1:
            command += ['--launcher', 'pytorch']
        # the models are tiny: more threads only fight over the cores
        env = dict(os.environ, OMP_NUM_THREADS='1')
        # files, not pipes: a full pipe would block the training process
        self._logs = [open(log_prefix + ext, 'w+') for ext in ('.out', '.err')]
        self.popen = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=self._logs[0],
            stderr=self._logs[1])

    def _run_dirs(self) -> List[str]:
        return glob.glob(osp.join(self.work_dir, '*', 'vis_data'))

    def wait_for_checkpoint(self, timeout: float = 300) -> str:
        """Poll until ``work_dir/last_checkpoint`` names a saved checkpoint
        (or the process ends); return its path ('' if none)."""
        marker = osp.join(self.work_dir, 'last_checkpoint')
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.popen.poll() is None:
            if osp.isfile(marker):
                with open(marker) as f:
                    path = f.read().strip()
                if path and osp.exists(path):
                    return path
            time.sleep(0.02)
        return ''

    def wait(self, timeout: float = 300) -> TrainResult:
        """Wait for the process; return what it did."""
        try:
            returncode = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            returncode = self.popen.wait()
        stdout, stderr = (_read_and_close(f) for f in self._logs)
        new = [d for d in self._run_dirs() if d not in self._runs_before]
        rows = []
        if new:
            path = osp.join(max(new), 'scalars.json')
            if osp.isfile(path):
                with open(path) as f:
                    rows = [json.loads(line) for line in f if line.strip()]
        return TrainResult(returncode, stdout, stderr, rows)


def _read_and_close(file) -> str:
    file.seek(0)
    text = file.read()
    file.close()
    return text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class Trainer:
    """Writes child configs of the toy-mixture configs and runs them.

    ``runner_config`` and ``zero1_config`` are the two configs (fp32 on
    mmengine's Runner; DeepSpeed ZeRO-1 bf16 on its FlexibleRunner).

    Args:
        tokenizer_dir (str): The tiny tokenizer.
        toy_root (str): The toy mixture (``write_toy_mixture``).
        tmp_dir (str): Where configs and logs go.
    """

    runner_config = RUNNER_CONFIG
    zero1_config = ZERO1_CONFIG

    def __init__(self, tokenizer_dir: str, toy_root: str,
                 tmp_dir: str) -> None:
        self.tokenizer_dir = tokenizer_dir
        self.toy_root = toy_root
        self.tmp_dir = tmp_dir
        self._count = 0

    def config(self, base: str, extra: str = '') -> str:
        """Write a child config of ``base`` reading the toy mixture, with
        ``extra`` (config text, which may use ``toy_root`` and
        ``tokenizer``) appended; return its path."""
        self._count += 1
        path = osp.join(self.tmp_dir, f'config_{self._count}.py')
        with open(path, 'w') as f:
            f.write(
                _CHILD_CONFIG.format(
                    base=base,
                    toy_root=self.toy_root,
                    tokenizer=self.tokenizer_dir) + extra)
        return path

    def start(self,
              config: str,
              work_dir: str,
              args: Sequence[str] = (),
              nproc: int = 1) -> TrainProcess:
        """Start ``tools/train.py config --work-dir work_dir *args``."""
        self._count += 1
        log_prefix = osp.join(self.tmp_dir, f'train_{self._count}')
        return TrainProcess(config, str(work_dir), args, nproc, log_prefix)

    def run(self,
            config: str,
            work_dir: str,
            args: Sequence[str] = (),
            nproc: int = 1,
            timeout: Optional[float] = 300) -> TrainResult:
        """Run ``tools/train.py`` to the end."""
        return self.start(config, work_dir, args, nproc).wait(timeout)


@pytest.fixture(scope='session')
def toy_root(tmp_path_factory) -> str:
    """The toy mixture: 8 pairs, documents and 4-frame videos, 32 px."""
    root = str(tmp_path_factory.mktemp('toy'))
    write_toy_mixture(root, num_samples=8, image_size=32, num_frames=4)
    return root


@pytest.fixture(scope='session')
def trainer(tokenizer_dir, toy_root, tmp_path_factory) -> Trainer:
    """Child configs and ``tools/train.py`` subprocesses (see Trainer)."""
    return Trainer(tokenizer_dir, toy_root,
                   str(tmp_path_factory.mktemp('train')))
