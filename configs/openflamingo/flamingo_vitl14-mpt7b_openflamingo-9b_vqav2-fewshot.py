# OpenFlamingo-9B on few-shot VQAv2 (0/4/8/16/32 shots); answers are short,
# as OpenFlamingo generates them (5 new tokens, beam 3):
#   python tools/test.py CONFIG none --work-dir work_dirs/of9b_vqav2
_base_ = [
    './flamingo_vitl14-mpt7b_openflamingo-9b.py',
    '../_base_/datasets/vqav2_fewshot.py'
]
model = dict(
    task='vqa',
    generation_cfg=dict(num_beams=3, max_new_tokens=5, length_penalty=0.0))
