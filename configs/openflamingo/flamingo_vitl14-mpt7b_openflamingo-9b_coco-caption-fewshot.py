# OpenFlamingo-9B on few-shot COCO captioning (0/4/8/16/32 shots):
#   python tools/test.py CONFIG none --work-dir work_dirs/of9b_coco
# (the converted checkpoint is already named in the model config).
_base_ = [
    './flamingo_vitl14-mpt7b_openflamingo-9b.py',
    '../_base_/datasets/coco_caption_fewshot.py'
]
model = dict(task='caption')
