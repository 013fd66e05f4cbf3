"""The first transform of an inference pipeline: request -> prompt + media.

It serves two callers with one pipeline (a config's
``test_dataloader.dataset.pipeline``):

- :func:`~mmflamingo.apis.inference_model` gives ``media`` (RGB images or
  lists of frames) and optionally the ``text`` of the prompt;
- MMPretrain's ``ImageCaptionInferencer`` and
  ``VisualQuestionAnsweringInferencer`` give one ``img`` (a BGR array, as
  ``mmcv.imread`` loads it) and, for VQA, a ``question``.

Configs name it by its import path,
``type='mmflamingo.apis.FlamingoPromptInputs'``, which any registry scope
resolves (MMPretrain builds its inferencers' pipelines in its own scope).
"""
from mmcv.transforms import BaseTransform

from mmflamingo.registry import TRANSFORMS
from mmflamingo.tokens import MEDIA_TOKEN

__all__ = ['FlamingoPromptInputs']


@TRANSFORMS.register_module()
class FlamingoPromptInputs(BaseTransform):
    """Fill ``media`` and ``text`` from an inference request.

    ``img`` (one BGR image) becomes ``media = [img as RGB]``. Without a
    ``text``, the prompt is ``prompt`` formatted with the request's fields,
    e.g. ``'<image>Question:{question} Short answer:'``. The prompt must have
    one ``<image>`` marker per medium.

    Args:
        prompt (str): ``str.format`` template of the default prompt.
            Defaults to ``'<image>Output:'`` (OpenFlamingo's 0-shot caption
            query).

    Raises:
        KeyError: if the template needs a field the request lacks.
        ValueError: if the template has no ``{question}`` for a given
            question, or the markers and the media differ in number.
    """

    def __init__(self, prompt: str = MEDIA_TOKEN + 'Output:') -> None:
        self.prompt = prompt

    def transform(self, results: dict) -> dict:
        if 'img' in results:
            results['media'] = [results.pop('img')[..., ::-1]]
        if results.get('text') is None:
            if 'question' in results and '{question}' not in self.prompt:
                raise ValueError(f'the prompt {self.prompt!r} asks no '
                                 'question: use a VQA model or config')
            try:
                results['text'] = self.prompt.format(**results)
            except KeyError as error:
                raise KeyError(f'the prompt {self.prompt!r} needs {error}; '
                               'pass it (e.g. question=...)') from None
        num_markers = results['text'].count(MEDIA_TOKEN)
        num_media = len(results.get('media', []))
        if num_markers != num_media:
            raise ValueError(f'the prompt {results["text"]!r} has '
                             f'{num_markers} {MEDIA_TOKEN} markers but '
                             f'{num_media} media were given')
        return results
