# Ablation of stage 1 of the shapes recipe (not the recipe's encoder): the
# tiny CLIP trained with NegCLIP's hard negatives (Yuksekgonul et al., ICLR
# 2023): each caption also scored against itself with one shape word, one
# colour word and one size word swapped. Random batches rarely need a
# caption's shapes to tell it from the others', so the plain encoder reads
# them poorly: a linear probe of the mean of the 2x2 patch tokens at an
# object's place reads its shape 62% (plain) -> 70% (this config), of the
# four tokens concatenated 85% -> 91%; colour 99.7% in both. Flamingo
# trained on it (the mixture config, 1,600 steps, seed 0) names shapes in
# 0-shot captions 49% right instead of 35%, but colours 50% instead of 82%,
# and VQA does not move (50.0 / 48.8 at 0 / 4 shots against 48.4 / 52.4 on
# 250 questions); issue 10's note has the runs. Run by
#   python tools/train.py \
#       configs/shapes/clip-tiny_shapes_contrastive-negclip.py
_base_ = ['./clip-tiny_shapes_contrastive.py']

train_dataloader = dict(
    dataset=dict(pipeline=[
        dict(type='RandomCaption'),
        # the world's shapes, colours and sizes
        # (mmflamingo/shapes_world/scenes.py)
        dict(
            type='SwapWordNegatives',
            groups=[
                ['circle', 'square', 'triangle', 'diamond', 'cross'],
                ['red', 'green', 'blue', 'yellow', 'purple', 'orange'],
                ['small', 'large'],
            ]),
        dict(type='LoadMedia'),
        dict(type='ResizeMedia', size={{_base_.image_size}}),
        dict(type='PackFlamingoInputs', meta_keys=['hard_negatives']),
    ]))
custom_hooks = [
    dict(
        type='SavePretrainedHook',
        out_dir='work_dirs/shapes/vision-negclip/hf')
]
work_dir = 'work_dirs/shapes/vision-negclip'
