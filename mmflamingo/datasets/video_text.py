"""Video-caption pairs: one video (T frames) and its caption per sample."""
import json
import os.path as osp
from typing import List, Optional, Tuple

from mmflamingo.registry import DATASETS
from .image_text import BaseImageTextDataset
from .sequence_dataset import check_dir, check_file


@DATASETS.register_module()
class VideoTextPairs(BaseImageTextDataset):
    """Video-text pairs from a JSON-lines file.

    Each line is ``{"video": path, "caption": str}``, the path relative to
    ``data_prefix['video']`` and naming a video file or a folder of frames;
    blank lines are ignored. As for image-text pairs, the text is
    ``<image>{caption}<|endofchunk|>{eos}`` (the video is the one medium),
    truncated to ``max_tokens``, and an empty caption makes the sample
    unusable (skipped in training). ``media`` is ``[video path]`` and
    ``source`` the video path: decode it with :class:`LoadVideoFrames`, e.g.
    ::

        pipeline = [
            dict(type='LoadVideoFrames', num_frames=8, fps=1.0),
            dict(type='ResizeMedia', size=224),
            dict(type='PackFlamingoInputs', meta_keys=['source']),
        ]

    Args:
        ann_file (str): The ``.jsonl`` file (relative to ``data_root``).
        tokenizer (dict): The model's tokenizer config (its eos token ends
            every sequence; truncation counts its tokens).
        data_prefix (dict): ``video``: the video directory. Defaults to
            ``dict(video='')``.
        max_tokens (int, optional): Truncate each sequence to this many
            tokens. Defaults to 32.
        **kwargs: Other :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self,
                 ann_file: str,
                 tokenizer: dict,
                 data_prefix: dict = dict(video=''),
                 max_tokens: Optional[int] = 32,
                 **kwargs) -> None:
        super().__init__(
            tokenizer=tokenizer,
            max_tokens=max_tokens,
            ann_file=ann_file,
            data_prefix=data_prefix,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read the file; a malformed line raises, naming it."""
        check_file(self.ann_file, 'ann_file')
        video_dir = self.data_prefix['video']
        check_dir(video_dir, "data_prefix['video']")
        data_list = []
        with open(self.ann_file, encoding='utf-8') as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    video, caption = record['video'], record['caption']
                    if not (isinstance(video, str)
                            and isinstance(caption, str)):
                        raise TypeError('not strings')
                except (ValueError, KeyError, TypeError) as error:
                    raise ValueError(
                        f'{self.ann_file}:{line_no}: expected a JSON object '
                        f'with "video" and "caption" strings ({error!r})'
                    ) from None
                path = osp.join(video_dir, video)
                data_list.append(
                    dict(video=path, caption=caption, source=path))
        return data_list

    def read_pair(self, info: dict) -> Tuple[str, str]:
        """The video's path (decoded by the pipeline) and its caption."""
        return info['video'], info['caption']
