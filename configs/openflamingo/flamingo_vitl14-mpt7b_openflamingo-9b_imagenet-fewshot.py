# OpenFlamingo-9B on few-shot ImageNet (0/4/8/16/32 shots), its 1000 class
# names ranked by the mean log-likelihood per token, as OpenFlamingo ranks:
#   python tools/test.py CONFIG none --work-dir work_dirs/of9b_imagenet
_base_ = [
    './flamingo_vitl14-mpt7b_openflamingo-9b.py',
    '../_base_/datasets/imagenet_fewshot.py'
]
