"""Captioning metrics (CIDEr, BLEU-4, METEOR, ROUGE-L) from pycocoevalcap.

The captions are tokenised by pycocoevalcap's ``PTBTokenizer`` and scored by
its own scorers, as the COCO caption evaluation does. SPICE is never built:
pycocoevalcap's ``Spice`` (and so ``COCOEvalCap.evaluate``) downloads
Stanford CoreNLP, which fails offline. The tokenizer and METEOR run Java.
"""
import importlib.util
import os.path as osp
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import mmengine
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from mmflamingo.registry import METRICS

__all__ = ['CaptionMetric', 'postprocess_caption_generation']

_SCORERS = ('CIDEr', 'BLEU-4', 'METEOR', 'ROUGE-L')


def postprocess_caption_generation(text: str) -> str:
    """Cut a generated caption as OpenFlamingo does.

    The generation is cut before the first 'Output' (the model going on with
    the next few-shot example), double quotes are removed, and the ends are
    stripped: ``' a dog on a "sofa". Output: a cat'`` ->
    ``'a dog on a sofa.'``.

    Args:
        text (str): The text generated after the prompt.

    Returns:
        str: The caption.
    """
    return text.split('Output', 1)[0].replace('"', '').strip()


def _check_requirements() -> None:
    # pycocoevalcap is optional (requirements/optional.txt), so it is
    # imported where it is used, and only its absence is checked here
    if importlib.util.find_spec('pycocoevalcap') is None:
        raise ImportError('CaptionMetric needs pycocoevalcap: `pip install '
                          'pycocoevalcap` (see requirements/optional.txt).')
    if shutil.which('java') is None:
        raise RuntimeError(
            'CaptionMetric needs a Java runtime: pycocoevalcap tokenises the '
            "captions (and computes METEOR) with Java, and no 'java' is on "
            'PATH. Install one, e.g. `apt-get install default-jre-headless`.')


# the metrics whose corpus score is the mean of the per-image scores
# (CIDEr-D's document frequencies are the corpus's in both)
PER_IMAGE_METRICS = ('CIDEr', 'ROUGE-L')


def _score(name: str, gts: Dict[int, List[str]],
           res: Dict[int, List[str]]) -> Tuple[float, Optional[list]]:
    """The corpus score of one of :data:`_SCORERS` on tokenised captions,
    and, for :data:`PER_IMAGE_METRICS`, each image's."""
    if name == 'CIDEr':
        from pycocoevalcap.cider.cider import Cider
        score, scores = Cider().compute_score(gts, res)
        return score, list(scores)
    if name == 'BLEU-4':
        from pycocoevalcap.bleu.bleu import Bleu
        return Bleu(4).compute_score(gts, res, verbose=0)[0][3], None
    if name == 'METEOR':
        from pycocoevalcap.meteor.meteor import Meteor
        meteor = Meteor()  # a Java process, ended when deleted
        score = meteor.compute_score(gts, res)[0]
        del meteor
        return score, None
    from pycocoevalcap.rouge.rouge import Rouge
    score, scores = Rouge().compute_score(gts, res)
    return score, list(scores)


def _json_id(image_id):
    # ids may come as numpy or torch integers, which json cannot write
    return image_id if isinstance(image_id, str) else int(image_id)


@METRICS.register_module()
class CaptionMetric(BaseMetric):
    """COCO caption metrics (CIDEr by default), x100.

    Each data sample needs:

    - ``pred_caption`` (str): the generated caption, from the model's
      predict.
    - ``gt_caption`` (list[str] or str): the reference captions (5 in COCO).
      Not needed with ``format_only``.
    - ``image_id`` (int or str): needed with ``format_only`` only.

    The predictions and references are tokenised together by pycocoevalcap's
    ``PTBTokenizer`` (lowercased, punctuation removed) and scored over the
    whole set (CIDEr's document frequencies come from the references of the
    evaluated set, as in the COCO evaluation). After :meth:`compute_metrics`,
    ``sample_scores`` holds each image's CIDEr and ROUGE-L (whose means are
    the corpus scores), for confidence intervals.

    Args:
        metrics (Sequence[str]): What to report, among 'CIDEr', 'BLEU-4',
            'METEOR' and 'ROUGE-L'. Defaults to ``('CIDEr', )``.
        postprocess (bool): Cut the generations with
            :func:`postprocess_caption_generation` first. Defaults to True.
        format_only (bool): Only write the captions to
            ``{outfile_prefix}.json`` in the format of the COCO caption
            results, ``[{"image_id": ..., "caption": str}]``, and report
            nothing. Defaults to False.
        outfile_prefix (str, optional): The prefix of the json file. Required
            with ``format_only``. Defaults to None.
        collect_device (str): Device to gather the results of all ranks on,
            'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names, e.g. 'coco'.
            Defaults to None.
    """
    default_prefix: Optional[str] = 'caption'

    def __init__(self,
                 metrics: Sequence[str] = ('CIDEr', ),
                 postprocess: bool = True,
                 format_only: bool = False,
                 outfile_prefix: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if isinstance(metrics, str):
            metrics = (metrics, )
        unknown = [m for m in metrics if m not in _SCORERS]
        if unknown or not metrics:
            raise ValueError(f'CaptionMetric: unknown metrics {unknown}, '
                             f'choose among {list(_SCORERS)}')
        if format_only and outfile_prefix is None:
            raise ValueError('CaptionMetric: format_only=True needs an '
                             'outfile_prefix to write the captions to')
        if not format_only:
            _check_requirements()  # fail before inference, not after it
        self.metrics = tuple(metrics)
        self.postprocess = postprocess
        self.format_only = format_only
        self.outfile_prefix = outfile_prefix

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep the caption (and references) of each sample of a batch.

        Args:
            data_batch: The batch from the dataloader (unused).
            data_samples (Sequence[dict]): The model's outputs, as dicts.
        """
        for sample in data_samples:
            caption = sample['pred_caption']
            if self.postprocess:
                caption = postprocess_caption_generation(caption)
            result = dict(
                pred_caption=caption, image_id=sample.get('image_id'))
            if not self.format_only:
                if 'gt_caption' not in sample:
                    raise KeyError('CaptionMetric: the data sample of image '
                                   f"{sample.get('image_id')} has no "
                                   "'gt_caption' (the reference captions)")
                refs = sample['gt_caption']
                result['gt_caption'] = [refs] if isinstance(
                    refs, str) else list(refs)
            self.results.append(result)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Score all captions, or write them.

        Args:
            results (list[dict]): What :meth:`process` kept, from all ranks.

        Returns:
            dict[str, float]: One entry per metric, in percent, or nothing
            with ``format_only``.
        """
        if self.format_only:
            self._dump(results)
            return {}
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        # One Java call for both: predictions first, since the tokenizer
        # drops the empty lines at the end of its output.
        captions = {
            ('res', i): [dict(caption=r['pred_caption'])]
            for i, r in enumerate(results)
        }
        captions.update({
            ('gts', i): [dict(caption=c) for c in r['gt_caption']]
            for i, r in enumerate(results)
        })
        tokens = PTBTokenizer().tokenize(captions)
        res = {i: tokens[('res', i)] for i in range(len(results))}
        gts = {i: tokens[('gts', i)] for i in range(len(results))}
        metrics, self.sample_scores = {}, {}
        for name in self.metrics:
            score, scores = _score(name, gts, res)
            metrics[name] = 100 * float(score)
            if scores is not None:
                # in image order: the scorers go through the keys in order
                self.sample_scores[name] = [100 * float(x) for x in scores]
        return metrics

    def _dump(self, results: List[dict]) -> None:
        if any(r['image_id'] is None for r in results):
            raise KeyError("CaptionMetric: data samples without 'image_id', "
                           'needed to write the captions')
        captions = [
            dict(image_id=_json_id(r['image_id']), caption=r['pred_caption'])
            for r in results
        ]
        path = f'{self.outfile_prefix}.json'
        mmengine.mkdir_or_exist(osp.dirname(osp.abspath(path)))
        mmengine.dump(captions, path)
        print_log(f'Captions written to {path}', logger='current')
