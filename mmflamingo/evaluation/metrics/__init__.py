from .caption import CaptionMetric, postprocess_caption_generation
from .classification import ROCAUC, RankClassificationMetric, roc_auc
from .vqa import (VQAAccuracy, normalize_vqa_answer, round_half_away,
                  summarize_vqa_accuracy, vqa_accuracy)

__all__ = [
    'CaptionMetric', 'postprocess_caption_generation', 'ROCAUC',
    'RankClassificationMetric', 'roc_auc', 'VQAAccuracy',
    'normalize_vqa_answer', 'round_half_away', 'summarize_vqa_accuracy',
    'vqa_accuracy'
]
