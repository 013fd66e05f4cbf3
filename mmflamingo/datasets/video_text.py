"""Video-caption pairs: one video (T frames) and its caption per sample."""
from mmflamingo.registry import DATASETS
from .image_text import JsonlImageText


@DATASETS.register_module()
class VideoTextPairs(JsonlImageText):
    """Video-text pairs from a JSON-lines file.

    Each line is ``{"video": path, "caption": str}``, the path relative to
    ``data_prefix['video']`` and naming a video file or a folder of frames;
    blank lines are ignored. As for image-text pairs, the text is
    ``<image>{caption}<|endofchunk|>{eos}`` (the video is the one medium),
    truncated to ``max_tokens``, and an empty caption, or one holding a
    literal ``<image>`` or ``<|endofchunk|>``, makes the sample unusable
    (skipped in training). ``media`` is ``[video path]`` and
    ``source`` names the video: decode it with :class:`LoadVideoFrames`, e.g.
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

    media_key = 'video'
    prefix_key = 'video'
