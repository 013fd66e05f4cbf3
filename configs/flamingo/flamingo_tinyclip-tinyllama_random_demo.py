# Few-shot prompting of the tiny random Flamingo: runs the whole inference
# path (pipeline -> preprocessor -> vision encoder -> perceiver -> gated LM ->
# beam search) in seconds. The weights are random, so is the text.
_base_ = ['../_base_/models/flamingo_tiny.py']

default_scope = 'mmflamingo'
randomness = dict(seed=0)
