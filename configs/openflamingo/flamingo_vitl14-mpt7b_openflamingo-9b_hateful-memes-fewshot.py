# OpenFlamingo-9B on few-shot Hateful Memes (0/4/8/16/32 shots), 'no' and
# 'yes' ranked by the mean log-likelihood per token, as OpenFlamingo ranks:
#   python tools/test.py CONFIG none --work-dir work_dirs/of9b_hateful_memes
_base_ = [
    './flamingo_vitl14-mpt7b_openflamingo-9b.py',
    '../_base_/datasets/hateful-memes_fewshot.py'
]
