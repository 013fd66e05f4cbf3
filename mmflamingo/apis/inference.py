"""Build a Flamingo by name or config and run it on images, videos and text.

Example:
    >>> from mmflamingo.apis import inference_model
    >>> inference_model('flamingo-tiny_shapes_caption',
    ...                 'demo/demo_shapes.png').pred_caption
    >>> inference_model('flamingo-tiny_shapes_vqa', 'demo/demo_shapes.png',
    ...                 question='What color is the circle?').pred_answer
"""
import os
import os.path as osp
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import DefaultScope, init_default_scope
from mmpretrain.structures import DataSample
from PIL import Image

from mmflamingo.datasets.transforms import (LoadVideoFrames, MediaInput,
                                            media_pipeline)
from mmflamingo.evaluation.prompts import PROMPT_TEMPLATES
from mmflamingo.models.utils import load_flamingo_checkpoint
from mmflamingo.registry import MODELS
from .inputs import FlamingoPromptInputs
from .model_index import get_model_info, is_model_name, trained_weights

__all__ = ['get_model', 'init_model', 'inference_model', 'VIDEO_EXTENSIONS']

ModelType = Union[torch.nn.Module, str, Config]
# a path with one of these suffixes (or a folder of frames) is a video
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v')


def get_model(model: Union[str, Config],
              pretrained: Union[bool, str] = True,
              device: Union[str, torch.device] = 'cpu',
              cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """Build a Flamingo from a model name or a config, as MMPretrain's
    ``get_model`` does.

    Args:
        model (str | Config): A name from :func:`list_models`, a config file
            or a config.
        pretrained (bool | str): A checkpoint of the trained parts; True
            loads a named model's weights (a config has none); False loads
            nothing. Defaults to True.
        device (str | torch.device): Defaults to ``'cpu'``.
        cfg_options (dict, optional): Overrides merged into the config.

    Returns:
        nn.Module: The model, in eval mode, with its config as ``.cfg``.

    Raises:
        FileNotFoundError: if a named model's weights were not made yet,
            naming them and the command that makes them.
    """
    metainfo = None
    if is_model_name(model):
        metainfo = get_model_info(model)
        if pretrained is True:
            pretrained = trained_weights(model)
        model = metainfo.config
    config = Config.fromfile(model) if isinstance(model, str) else model
    if cfg_options:
        config.merge_from_dict(cfg_options)
    init_default_scope(config.get('default_scope', 'mmflamingo'))
    import mmflamingo.models  # noqa: F401  (registers the components)
    flamingo = MODELS.build(config.model)
    if isinstance(pretrained, str):
        load_flamingo_checkpoint(flamingo, pretrained)
    flamingo.cfg = config
    # what MMPretrain's inferencers read
    flamingo._config, flamingo._metainfo = config, metainfo
    return flamingo.to(device).eval()


def init_model(config: Union[str, Config],
               checkpoint: Optional[str] = None,
               device: Union[str, torch.device] = 'cpu',
               cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """Build a Flamingo from a config file or model name; load its weights.

    Args:
        config (str | Config): Config file path or object, or a model name
            (see :func:`list_models`).
        checkpoint (str, optional): Checkpoint of the trained parts.
            Defaults to a named model's weights (none for a config).
        device (str | torch.device): Defaults to ``'cpu'``.
        cfg_options (dict, optional): Overrides merged into the config.

    Returns:
        nn.Module: The model, in eval mode, with its config as ``.cfg``.
    """
    return get_model(config, checkpoint or True, device, cfg_options)


def _is_video_path(item: object) -> bool:
    if not isinstance(item, (str, os.PathLike)):
        return False
    return osp.isdir(item) or str(item).lower().endswith(VIDEO_EXTENSIONS)


def _load_media(media: Union[MediaInput, Sequence],
                decoder: LoadVideoFrames) -> list:
    """One medium or a sequence of them -> a list of images and frame lists,
    with video files and folders decoded to their frames."""
    if isinstance(media, (str, os.PathLike, np.ndarray, Image.Image)):
        media = [media]
    return [
        decoder.load(str(item)) if _is_video_path(item) else item
        for item in media
    ]


def _video_decoder(model: torch.nn.Module, num_frames: Optional[int],
                   fps: Optional[float]) -> LoadVideoFrames:
    """Sampling by the arguments, else the config's ``video_sampling``, else
    as many frames as the perceiver has temporal embeddings (or 8) at
    1 fps."""
    cfg = getattr(model, 'cfg', None) or Config()
    sampling = dict(
        num_frames=getattr(model.neck, 'max_num_frames', None) or 8, fps=1.0)
    sampling.update(cfg.get('video_sampling', {}))
    sampling.update({
        k: v
        for k, v in dict(num_frames=num_frames, fps=fps).items()
        if v is not None
    })
    return LoadVideoFrames(**sampling)


def _pipeline(model: torch.nn.Module) -> Compose:
    """The config's test pipeline, else the task's 0-shot prompt, loading
    and resizing to the vision encoder's input size."""
    cfg = getattr(model, 'cfg', None) or Config()
    dataset = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    steps = dataset.get('pipeline')
    if steps is None:
        prompt = PROMPT_TEMPLATES[model.task]['query_template']
        steps = [
            dict(type=FlamingoPromptInputs, prompt=prompt),
            *media_pipeline(model.backbone.image_size, meta_keys=['question'])
        ]
    with DefaultScope.overwrite_default_scope('mmflamingo'):
        return Compose(steps)


def inference_model(model: ModelType,
                    media: Union[MediaInput, Sequence[Union[MediaInput,
                                                            List]]],
                    prompt: Optional[str] = None,
                    question: Optional[str] = None,
                    num_frames: Optional[int] = None,
                    fps: Optional[float] = None,
                    **generation_cfg) -> DataSample:
    """Caption, answer, or continue an interleaved prompt.

    With no ``prompt``, the model's default 0-shot prompt is used: the first
    transform of its config's test pipeline, else OpenFlamingo's query for
    its task (``'<image>Output:'``, or
    ``'<image>Question:{question} Short answer:'`` with ``question``).

    Args:
        model (nn.Module | str | Config): From :func:`init_model`, or a model
            name or config given to it.
        media: One image (path, PIL image or RGB array) or video (a video
            file or a folder of frames), or a sequence of them, one per
            ``<image>`` marker of the prompt, in order; a list of frames in
            the sequence is a video.
        prompt (str, optional): Text with ``<image>`` markers, e.g.
            ``'<image>Output: a cat.<|endofchunk|><image>Output:'``.
            Defaults to the 0-shot prompt.
        question (str, optional): The question of the default VQA prompt.
        num_frames (int, optional): Frames sampled from a video file or
            folder. Defaults to the config's ``video_sampling``, else the
            perceiver's ``max_num_frames``, else 8.
        fps (float, optional): Their rate, in frames per second of video.
            Defaults to the config's ``video_sampling``, else 1.
        **generation_cfg: Overrides of the model's ``generation_cfg``.

    Returns:
        DataSample: With ``pred_caption`` (or ``pred_answer``), ``text``
        (the prompt) and ``question`` if given.
    """
    if not isinstance(model, torch.nn.Module):
        model = init_model(model)
    decoder = _video_decoder(model, num_frames, fps)
    request = dict(media=_load_media(media, decoder), text=prompt)
    if question is not None:
        request['question'] = question
    packed = _pipeline(model)(request)
    data = model.data_preprocessor(pseudo_collate([packed]), False)
    with torch.no_grad():
        return model.predict(data['images'], data['data_samples'],
                             **generation_cfg)[0]
