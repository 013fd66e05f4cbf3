"""LoadVideoFrames and VideoTextPairs on small videos written by the tests.

Every frame carries its index as 8 black/white 8x8 blocks in its bottom half
(robust to lossy coding), so a test can read back WHICH frames were sampled;
a coloured square moves in the top half.
"""
import json
import logging
import math

import av
import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from PIL import Image

from mmflamingo.datasets import (LoadVideoFrames, UnusableSample,
                                 VideoTextPairs, sample_timestamps)
from mmflamingo.datasets.transforms import (LoadMedia, PackFlamingoInputs,
                                            ResizeMedia)
from mmflamingo.registry import DATASETS

SIZE = 32
CODEC = 'mpeg4'  # FFmpeg's own encoder: in every PyAV wheel


def make_frame(index: int) -> np.ndarray:
    """A ``(SIZE, SIZE, 3)`` frame showing ``index`` (0-255)."""
    frame = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    x = 3 * index % (SIZE - 8)
    frame[4:12, x:x + 8] = (255, 64, 0)
    for bit in range(8):
        if index >> bit & 1:
            row, col = 16 + 8 * (bit // 4), 8 * (bit % 4)
            frame[row:row + 8, col:col + 8] = 255
    return frame


def read_index(frame: np.ndarray) -> int:
    """The index drawn by :func:`make_frame` (block centres only)."""
    index = 0
    for bit in range(8):
        row, col = 16 + 8 * (bit // 4), 8 * (bit % 4)
        if frame[row + 2:row + 6, col + 2:col + 6].mean() > 128:
            index |= 1 << bit
    return index


def write_video(path, num_frames: int, rate: int, gop: int = 12) -> str:
    """Frames ``0 .. num_frames-1`` at ``rate`` fps: frame i at i/rate s."""
    with av.open(str(path), 'w') as container:
        stream = container.add_stream(CODEC, rate=rate)
        stream.width = stream.height = SIZE
        stream.pix_fmt = 'yuv420p'
        stream.bit_rate = 1_000_000
        stream.codec_context.gop_size = gop
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(make_frame(i), format='rgb24')
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return str(path)


def write_folder(path, names) -> str:
    """One PNG per name; the i-th name shows index i."""
    path.mkdir()
    for i, name in enumerate(names):
        Image.fromarray(make_frame(i)).save(path / name)
    return str(path)


def indices(frames) -> list:
    return [read_index(frame) for frame in frames]


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp('videos')
    clip = write_video(root / 'clip.mp4', num_frames=16, rate=4)  # 4 s
    # mkv writes its duration in the header: cut in half, the file still
    # claims 4 s but only its first frames decode
    full = write_video(root / 'full.mkv', num_frames=16, rate=4)
    with open(full, 'rb') as f:
        data = f.read()
    truncated = root / 'truncated.mkv'
    truncated.write_bytes(data[:len(data) // 2])
    write_folder(root / 'frames', [f'{i:03d}.png' for i in range(5)])
    (root / 'corrupt.mp4').write_bytes(b'\x00\x01not a video' * 100)
    return dict(
        root=root,
        clip=clip,
        long=write_video(root / 'long.mp4', num_frames=40, rate=1),  # 40 s
        truncated=str(truncated))


def test_sample_timestamps():
    # long enough: one frame every 1/fps seconds from the start
    assert sample_timestamps(4.0, 4, 1.0) == [0, 1, 2, 3]
    assert sample_timestamps(math.inf, 3, 2.0) == [0, 0.5, 1.0]
    # shorter than T / fps: T timestamps spread over the duration
    assert sample_timestamps(4.0, 8, 1.0) == [0, .5, 1, 1.5, 2, 2.5, 3, 3.5]


def test_video_at_fps(videos):
    frames = LoadVideoFrames(num_frames=4, fps=1.0).load(videos['clip'])
    assert all(f.shape == (SIZE, SIZE, 3) and f.dtype == np.uint8
               for f in frames)
    # frames on screen at 0, 1, 2 and 3 s of a 4 fps video
    assert indices(frames) == [0, 4, 8, 12]
    frames = LoadVideoFrames(num_frames=3, fps=2.0).load(videos['clip'])
    assert indices(frames) == [0, 2, 4]
    # the colours survive decoding (RGB, not BGR): the square is orange-red
    assert frames[0][8, 4].tolist() == pytest.approx([255, 64, 0], abs=40)


def test_short_video_is_sampled_uniformly(videos):
    # 8 frames at 1 fps need 8 s; the clip has 4: T timestamps over 4 s
    frames = LoadVideoFrames(num_frames=8, fps=1.0).load(videos['clip'])
    assert indices(frames) == [0, 2, 4, 6, 8, 10, 12, 14]
    # more frames wanted than the clip has: each is held while on screen
    frames = LoadVideoFrames(num_frames=32, fps=1.0).load(videos['clip'])
    assert indices(frames) == [i // 2 for i in range(32)]


def test_truncated_video_repeats_its_last_frame(videos):
    with av.open(videos['truncated']) as container:
        # the header says 4 s, but the stream stops before 1 s (frame 4)
        assert container.duration == 4 * av.time_base
        last = len(list(container.decode(video=0))) - 1
    assert 0 < last < 4
    frames = LoadVideoFrames(num_frames=4).load(videos['truncated'])
    assert indices(frames) == [0, last, last, last]


class SeekCounter:
    """Wraps a PyAV container and records its seeks."""

    def __init__(self, container, seeks: list) -> None:
        self.container, self.seeks = container, seeks

    def __getattr__(self, name):
        return getattr(self.container, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.container.close()

    def seek(self, offset, **kwargs):
        self.seeks.append(offset)
        return self.container.seek(offset, **kwargs)


def test_long_gaps_seek_and_give_the_same_frames(videos, monkeypatch):
    seeks = []
    av_open = av.open
    monkeypatch.setattr(av, 'open',
                        lambda path: SeekCounter(av_open(path), seeks))
    # 0, 10, 20, 30 s of a 40 s video with a keyframe every 12 s
    frames = LoadVideoFrames(num_frames=4, fps=0.1).load(videos['long'])
    assert indices(frames) == [0, 10, 20, 30]
    assert len(seeks) == 3
    seeks.clear()
    frames = LoadVideoFrames(
        num_frames=4, fps=0.1, seek_gap=math.inf).load(videos['long'])
    assert indices(frames) == [0, 10, 20, 30] and not seeks
    # gaps of 1 s: decode in order, and stop after 3 s of 40
    frames = LoadVideoFrames(num_frames=4, fps=1.0).load(videos['long'])
    assert indices(frames) == [0, 1, 2, 3] and not seeks
    # seeks that land on a keyframe before the last frame decoded: exact
    frames = LoadVideoFrames(
        num_frames=4, fps=0.5, seek_gap=0.5).load(videos['long'])
    assert indices(frames) == [0, 2, 4, 6] and len(seeks) == 3


def test_frame_folder(tmp_path):
    # natural order: f2 before f10; other files ignored
    folder = write_folder(tmp_path / 'frames',
                          [f'f{i}.png' for i in range(12)])
    (tmp_path / 'frames' / 'notes.txt').write_text('not a frame')
    frames = LoadVideoFrames(num_frames=3, fps=0.25).load(folder)
    assert indices(frames) == [0, 4, 8]
    # at folder_fps=2 the 12 files last 6 s
    frames = LoadVideoFrames(num_frames=4, folder_fps=2.0).load(folder)
    assert indices(frames) == [0, 2, 4, 6]
    # 3 files = 3 s < T / fps: uniform, each file held for its second
    short = write_folder(tmp_path / 'short', ['a.jpg', 'b.jpg', 'c.jpg'])
    frames = LoadVideoFrames(num_frames=6).load(short)
    assert len(frames) == 6 and frames[0].shape == (SIZE, SIZE, 3)
    assert indices(frames) == [0, 0, 1, 1, 2, 2]


def test_errors_name_the_file(tmp_path):
    load = LoadVideoFrames(num_frames=2)
    with pytest.raises(FileNotFoundError, match='missing.mp4'):
        load.load(str(tmp_path / 'missing.mp4'))
    corrupt = tmp_path / 'corrupt.mp4'
    corrupt.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(ValueError, match='corrupt.mp4'):
        load.load(str(corrupt))
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(ValueError, match='empty'):
        load.load(str(empty))


def test_pipeline_packs_one_video_of_t_frames(videos):
    results = LoadVideoFrames(num_frames=4)(dict(media=videos['clip']))
    # LoadMedia after it changes nothing
    again = LoadMedia()(dict(media=results['media']))['media']
    assert all((a == b).all() for a, b in zip(again[0], results['media'][0]))
    results = ResizeMedia(16)(dict(results, text='<image>a clip'))
    packed = PackFlamingoInputs()(results)
    assert packed['inputs'].shape == (1, 4, 3, 16, 16)
    assert packed['inputs'].dtype == torch.uint8
    # one path per medium
    results = LoadVideoFrames(num_frames=2)(
        dict(media=[videos['clip'], videos['long']]))
    assert [indices(m) for m in results['media']] == [[0, 4], [0, 1]]


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


def build_dataset(videos, tokenizer_dir, test_mode=False, num_frames=4):
    root = videos['root']
    annotations = [
        dict(video='clip.mp4', caption=' a square moves right '),
        dict(video='missing.mp4', caption='never loaded'),
        dict(video='corrupt.mp4', caption='never decoded'),
        dict(video='clip.mp4', caption='  '),
        dict(video='frames', caption='a folder of frames'),
    ]
    ann_file = root / 'ann.jsonl'
    ann_file.write_text('\n'.join(json.dumps(a) for a in annotations) + '\n')
    pipeline = [
        dict(type='LoadVideoFrames', num_frames=num_frames),
        dict(type='ResizeMedia', size=16),
        dict(type='PackFlamingoInputs', meta_keys=['source']),
    ]
    with DefaultScope.overwrite_default_scope('mmflamingo'):
        return DATASETS.build(
            dict(
                type='VideoTextPairs',
                ann_file=str(ann_file),
                tokenizer=dict(pretrained=tokenizer_dir),
                data_prefix=dict(video=str(root)),
                pipeline=pipeline,
                test_mode=test_mode))


def test_dataset_text_and_sources(videos, tokenizer_dir):
    dataset = build_dataset(videos, tokenizer_dir)
    assert isinstance(dataset, VideoTextPairs) and len(dataset) == 5
    sample = dataset[0]
    assert sample['inputs'].shape == (1, 4, 3, 16, 16)
    # the tiny tokenizer's eos is <|endoftext|>
    assert sample['data_samples'].text == (
        '<image>a square moves right<|endofchunk|><|endoftext|>')
    # the video, then where its annotation is
    assert sample['data_samples'].source == (
        f"{videos['clip']} ({dataset.ann_file}:1)")
    assert 'unusable' not in sample['data_samples']


def test_dataset_skips_bad_samples_in_training(videos, tokenizer_dir,
                                               warnings_logged):
    dataset = build_dataset(videos, tokenizer_dir)
    # missing, corrupt, empty caption, then the folder
    samples = [dataset[i]['data_samples'] for i in range(1, 5)]
    assert [s.get('unusable', False) for s in samples] == [True] * 3 + [False]
    assert samples[3].source.startswith(str(videos['root'] / 'frames') + ' (')
    assert len(warnings_logged) == 3
    for name, message in zip(['missing.mp4', 'corrupt.mp4', 'clip.mp4'],
                             warnings_logged):
        assert message.startswith('skipping ') and name in message
    assert 'empty caption' in warnings_logged[2]


def test_dataset_raises_in_test_mode(videos, tokenizer_dir):
    dataset = build_dataset(videos, tokenizer_dir, test_mode=True)
    with pytest.raises(FileNotFoundError, match='missing.mp4'):
        dataset[1]
    with pytest.raises(ValueError, match='corrupt.mp4'):
        dataset[2]
    with pytest.raises(UnusableSample, match='clip.mp4'):
        dataset[3]


def test_a_literal_flamingo_token_in_a_caption_is_refused(
        videos, tokenizer_dir):
    ann_file = videos['root'] / 'tokens.jsonl'
    ann_file.write_text(
        json.dumps(dict(video='clip.mp4', caption='moves<|endofchunk|>right'))
        + '\n')
    dataset = VideoTextPairs(
        ann_file=str(ann_file),
        tokenizer=dict(pretrained=tokenizer_dir),
        data_prefix=dict(video=str(videos['root'])),
        test_mode=True)
    with pytest.raises(
            UnusableSample,
            match=r'clip.mp4 \(.*tokens.jsonl:1\) holds a literal '
            r'<\|endofchunk\|>'):
        dataset[0]


def test_malformed_annotation_names_the_line(tmp_path, tokenizer_dir):
    ann_file = tmp_path / 'ann.jsonl'
    ann_file.write_text('{"video": "a.mp4", "caption": "ok"}\n'
                        '{"video": "b.mp4"}\n')
    with pytest.raises(ValueError, match=r'ann.jsonl:2'):
        VideoTextPairs(
            ann_file=str(ann_file), tokenizer=dict(pretrained=tokenizer_dir))


def test_flamingo_loss_on_a_packed_video(videos, tokenizer_dir,
                                         build_flamingo):
    num_frames = 4
    dataset = build_dataset(videos, tokenizer_dir, num_frames=num_frames)
    # open gates, so that the loss depends on every frame
    model = build_flamingo(
        gates=1.0, image_size=16, neck_cfg=dict(max_num_frames=num_frames))
    data = model.data_preprocessor(pseudo_collate([dataset[0], dataset[4]]))
    assert data['images'].shape == (2, 1, num_frames, 3, 16, 16)
    loss = model.loss(**data)['loss']
    assert torch.isfinite(loss)
    loss.backward()
    # every frame's temporal embedding receives a gradient
    grad = model.neck.frame_embs.grad
    assert grad is not None and (grad.abs().sum(-1) > 0).all()
