"""Sample a fixed number of frames from a video file or a folder of frames.

Which frames: T timestamps ``0, 1/fps, 2/fps, ...`` (seconds from the start);
when the clip is shorter than ``T / fps``, T timestamps spread evenly over its
duration instead (:func:`sample_timestamps`). The frame taken for a timestamp
is the one on screen at that moment: the last frame starting at or before it.
"""
import io
import math
import os
import os.path as osp
import re
from typing import Iterator, List, Sequence, Union

import av
import numpy as np
from av.container import InputContainer
from av.error import FFmpegError
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from mmcv.transforms import BaseTransform

from mmflamingo.registry import TRANSFORMS
from .media import load_rgb

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
# slack for float rounding of timestamps, far below any frame interval
_EPS = 1e-6


def write_video(path: str, frames: Sequence[np.ndarray], fps: int = 1) -> None:
    """Encode RGB frames to a video file with FFmpeg's MPEG-4 encoder (in
    every PyAV build), e.g. for generated data and demos.

    Args:
        path (str): The output file (``.mp4``).
        frames (Sequence[np.ndarray]): ``(H, W, 3)`` uint8 RGB frames, H and
            W even.
        fps (int): Frames per second. Defaults to 1.
    """
    with av.open(path, mode='w') as container:
        stream = container.add_stream('mpeg4', rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = 'yuv420p'
        for frame in frames:
            container.mux(
                stream.encode(VideoFrame.from_ndarray(frame, 'rgb24')))
        container.mux(stream.encode())


def sample_timestamps(duration: float, num_frames: int,
                      fps: float) -> List[float]:
    """The T = ``num_frames`` timestamps (seconds) sampled from a clip.

    ``i / fps`` for ``i < T`` when the clip lasts at least ``T / fps``
    seconds; otherwise ``i * duration / T``: T evenly spaced timestamps from
    the start, so that a short clip is still covered from start to end.

    Args:
        duration (float): Length of the clip in seconds (``inf`` if
            unknown).
        num_frames (int): T.
        fps (float): Sampling rate in frames per second.
    """
    if duration >= num_frames / fps:
        return [i / fps for i in range(num_frames)]
    return [i * duration / num_frames for i in range(num_frames)]


def _natural_key(name: str) -> list:
    """Sort key under which ``frame_2.jpg`` comes before ``frame_10.jpg``."""
    return [
        int(part) if part.isdigit() else part
        for part in re.split(r'(\d+)', name)
    ]


@TRANSFORMS.register_module()
class LoadVideoFrames(BaseTransform):
    """Decode T frames of each video in ``results['media']``.

    ``results['media']`` lists paths, one medium each (or is one path), as a
    video dataset such as :class:`VideoTextPairs` gives it: video files
    (anything FFmpeg reads, decoded with PyAV) or folders of frames (image
    files in natural order: ``2.jpg`` before ``10.jpg``; other files are
    ignored). An entry may also be a video file's bytes, as WebDataset
    shards hold it (``KEY.mp4``). Each becomes a list of T ``(H, W, 3)``
    uint8 RGB arrays, which is what :class:`LoadMedia` produces, so a video
    pipeline starts with this transform instead of ``LoadMedia`` (a
    ``LoadMedia`` after it leaves the arrays unchanged).

    Which frames (see :func:`sample_timestamps`): the frames on screen at
    ``0, 1/fps, ..., (T-1)/fps`` seconds, or, in a clip shorter than
    ``T / fps``, at T timestamps evenly spaced over its duration; a clip with
    fewer than T frames therefore repeats frames, each for as long as it is
    on screen. A folder is a clip whose i-th file is on screen from
    ``i / folder_fps`` seconds. Timestamps after the last decodable frame (a
    truncated file, or a duration in the header longer than the stream) get
    that last frame.

    Decoding reads the file in order and stops after the last timestamp
    (at most ``T / fps`` seconds of video); across a gap longer than
    ``seek_gap`` seconds it seeks to the keyframe before the next timestamp
    instead of decoding the frames in between.

    Args:
        num_frames (int): T, the frames per video. Defaults to 8.
        fps (float): Sampling rate, in frames per second of video.
            Defaults to 1.0.
        folder_fps (float): Frame rate assumed for folders of frames.
            Defaults to 1.0 (each file is one second).
        seek_gap (float): Seek rather than decode across gaps between
            timestamps longer than this, in seconds. Seeking lands on a
            keyframe and decodes from there, so it only pays off across
            gaps longer than the keyframe interval. Defaults to 5.0.

    Raises:
        FileNotFoundError: if a path does not exist.
        ValueError: naming the file, if it is not a video FFmpeg can open,
            or has no video stream, no decodable frame or no image file.
    """

    def __init__(self,
                 num_frames: int = 8,
                 fps: float = 1.0,
                 folder_fps: float = 1.0,
                 seek_gap: float = 5.0) -> None:
        if num_frames < 1 or fps <= 0 or folder_fps <= 0:
            raise ValueError('num_frames, fps and folder_fps must be '
                             f'positive, got {num_frames}, {fps}, '
                             f'{folder_fps}')
        self.num_frames = num_frames
        self.fps = fps
        self.folder_fps = folder_fps
        self.seek_gap = seek_gap

    def transform(self, results: dict) -> dict:
        videos = results['media']
        if isinstance(videos, (str, os.PathLike, bytes)):
            videos = [videos]
        results['media'] = [
            self.load(video if isinstance(video, bytes) else str(video))
            for video in videos
        ]
        return results

    def load(self, path: Union[str, bytes]) -> List[np.ndarray]:
        """T ``(H, W, 3)`` uint8 RGB frames of one video file or folder, or
        of a video file's bytes."""
        if isinstance(path, bytes):
            return self._load_video(
                io.BytesIO(path), f'<{len(path)} bytes of video>')
        if not osp.exists(path):
            raise FileNotFoundError(f'video not found: {path}')
        if osp.isdir(path):
            return self._load_folder(path)
        return self._load_video(path, path)

    def _load_folder(self, folder: str) -> List[np.ndarray]:
        names = sorted((name for name in os.listdir(folder)
                        if name.lower().endswith(IMAGE_EXTENSIONS)),
                       key=_natural_key)
        if not names:
            raise ValueError(f'no image files ({", ".join(IMAGE_EXTENSIONS)})'
                             f' in frame folder {folder}')
        times = sample_timestamps(
            len(names) / self.folder_fps, self.num_frames, self.fps)
        indices = [
            min(math.floor(t * self.folder_fps + _EPS),
                len(names) - 1) for t in times
        ]
        return [load_rgb(osp.join(folder, names[i])) for i in indices]

    def _load_video(self, file: Union[str, io.BytesIO],
                    path: str) -> List[np.ndarray]:
        try:
            container = av.open(file)
        except FFmpegError as error:
            raise ValueError(
                f'cannot open video {path}: {error.strerror}') from None
        with container:
            if not container.streams.video:
                raise ValueError(f'no video stream in {path}')
            stream = container.streams.video[0]
            if stream.duration:
                duration = float(stream.duration * stream.time_base)
            elif container.duration:
                duration = container.duration / av.time_base
            else:
                duration = math.inf
            frames = self._frames_at(
                container, stream,
                sample_timestamps(duration, self.num_frames, self.fps))
        if not frames:
            raise ValueError(f'no decodable video frame in {path}')
        return [frame.to_ndarray(format='rgb24') for frame in frames]

    def _frames_at(self, container: InputContainer, stream: VideoStream,
                   times: Sequence[float]) -> List[VideoFrame]:
        """The frame on screen at each of ``times`` (increasing, seconds
        from the stream's start); empty if nothing decodes."""
        start = stream.start_time or 0

        def seconds(frame: VideoFrame) -> float:
            return float((frame.pts - start) * stream.time_base)

        decoded = _decode(container, stream)
        frames: List[VideoFrame] = []
        current = upcoming = None  # the last frame <= t; the first one > t
        for t in times:
            reached = upcoming if upcoming is not None else current
            if reached is not None and t - seconds(reached) > self.seek_gap:
                try:
                    container.seek(
                        start + int(t / stream.time_base),
                        stream=stream,
                        backward=True)
                except FFmpegError:
                    pass  # not seekable: keep decoding in order
                else:
                    decoded = _decode(container, stream)
                    current = upcoming = None
            while upcoming is None or seconds(upcoming) <= t + _EPS:
                if upcoming is not None:
                    current = upcoming
                upcoming = next(decoded, None)
                if upcoming is None:  # end of the stream
                    break
            if current is None:
                # before the first frame (a stream starting late): take it;
                # after the end (a seek past it): repeat the last one
                current = upcoming if upcoming is not None else (
                    frames[-1] if frames else None)
            if current is None:
                return []
            frames.append(current)
        return frames


def _decode(container: InputContainer,
            stream: VideoStream) -> Iterator[VideoFrame]:
    """The stream's frames with a pts, ending at the first decoding error.
    """
    try:
        for frame in container.decode(stream):
            if frame.pts is not None:
                yield frame
    except FFmpegError:
        return
