from .answer_postprocess import (postprocess_answer,
                                 postprocess_vqa_generation, stem_vqa_answer)
from .class_scoring import classify_batch, score_class_names
from .demo_selection import (RandomDemoSelector, RICESSelector,
                             build_demo_selector, demo_orders,
                             load_rices_features, load_rices_pair,
                             save_rices_features)
from .fewshot_batch import predict_batch, to_metric_sample
from .fewshot_results import (format_markdown, summarize_trials,
                              write_fewshot_results)
from .fewshot_settings import FewShotSettings
from .media_cache import VisualTokenCache
from .metrics import *  # noqa: F401,F403
from .model_inputs import pack_inputs
from .prompts import FewShotPromptBuilder, build_query_prompt

__all__ = [
    'FewShotSettings', 'FewShotPromptBuilder', 'build_query_prompt',
    'RandomDemoSelector', 'RICESSelector', 'build_demo_selector',
    'demo_orders', 'load_rices_features', 'load_rices_pair',
    'save_rices_features', 'VisualTokenCache', 'pack_inputs', 'predict_batch',
    'to_metric_sample', 'classify_batch', 'score_class_names',
    'summarize_trials', 'format_markdown', 'write_fewshot_results',
    'postprocess_answer', 'postprocess_vqa_generation', 'stem_vqa_answer'
]
