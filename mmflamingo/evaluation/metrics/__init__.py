from .caption import CaptionMetric, postprocess_caption_generation
from .classification import ROCAUC, RankClassificationMetric, roc_auc
from .vqa import (VQAAccuracy, normalize_vqa_answer,
                  postprocess_vqa_generation, stem_vqa_answer, vqa_accuracy)

__all__ = [
    'CaptionMetric', 'postprocess_caption_generation', 'ROCAUC',
    'RankClassificationMetric', 'roc_auc', 'VQAAccuracy',
    'normalize_vqa_answer', 'postprocess_vqa_generation', 'stem_vqa_answer',
    'vqa_accuracy'
]
