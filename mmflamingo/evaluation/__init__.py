from .answer_postprocess import (postprocess_answer,
                                 postprocess_vqa_generation, stem_vqa_answer)
from .demo_selection import (RandomDemoSelector, RICESSelector,
                             load_rices_features, save_rices_features)
from .fewshot import evaluate_fewshot, write_fewshot_results
from .metrics import *  # noqa: F401,F403
from .prompts import FewShotPromptBuilder

__all__ = [
    'FewShotPromptBuilder', 'RandomDemoSelector', 'RICESSelector',
    'load_rices_features', 'save_rices_features', 'evaluate_fewshot',
    'write_fewshot_results', 'postprocess_answer',
    'postprocess_vqa_generation', 'stem_vqa_answer'
]
