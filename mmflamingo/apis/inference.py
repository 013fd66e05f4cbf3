"""Build a Flamingo from a config and run it on images and a prompt."""
from typing import List, Optional, Sequence, Union

import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope
from mmpretrain.structures import DataSample

from mmflamingo.datasets.transforms import MediaInput, media_pipeline
from mmflamingo.models.utils import load_flamingo_checkpoint
from mmflamingo.registry import MODELS


def init_model(config: Union[str, Config],
               checkpoint: Optional[str] = None,
               device: Union[str, torch.device] = 'cpu',
               cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """Build a Flamingo from a config file and load its trained weights.

    Args:
        config (str | Config): Config file path or object.
        checkpoint (str, optional): Checkpoint of the trained parts.
        device (str | torch.device): Defaults to ``'cpu'``.
        cfg_options (dict, optional): Overrides merged into the config.

    Returns:
        nn.Module: The model, in eval mode, with its config as ``.cfg``.
    """
    if isinstance(config, str):
        config = Config.fromfile(config)
    if cfg_options:
        config.merge_from_dict(cfg_options)
    init_default_scope(config.get('default_scope', 'mmflamingo'))
    import mmflamingo.models  # noqa: F401  (registers the components)
    model = MODELS.build(config.model)
    if checkpoint is not None:
        load_flamingo_checkpoint(model, checkpoint)
    model.cfg = config
    return model.to(device).eval()


def inference_model(model: torch.nn.Module,
                    media: Sequence[Union[MediaInput, List[MediaInput]]],
                    prompt: str, **generation_cfg) -> DataSample:
    """Generate a continuation of an interleaved prompt.

    Args:
        model (nn.Module): From :func:`init_model`.
        media (Sequence): One entry per ``<image>`` marker of ``prompt``, in
            order: an image (path, PIL image or RGB array) or a list of
            frames (a video).
        prompt (str): Text with ``<image>`` markers, e.g.
            ``'<image>Output: a cat.<|endofchunk|><image>Output:'``.
        **generation_cfg: Overrides of the model's ``generation_cfg``.

    Returns:
        DataSample: With ``pred_caption`` (or ``pred_answer``).
    """
    pipeline = Compose(media_pipeline(model.backbone.image_size))
    packed = pipeline(dict(media=list(media), text=prompt))
    data = model.data_preprocessor(pseudo_collate([packed]), False)
    with torch.no_grad():
        return model.predict(data['images'], data['data_samples'],
                             **generation_cfg)[0]
