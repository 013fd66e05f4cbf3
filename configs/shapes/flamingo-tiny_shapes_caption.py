# The tiny Flamingo trained on the shapes world, captioning an image or a
# video 0-shot:
#   python demo/image_demo.py demo/demo_shapes.png
#   python demo/video_demo.py demo/demo_shapes_video.mp4
# Weights: `bash tools/run_shapes_recipe.sh` (model-index.yml names them).
# `mmflamingo.apis.inference_model` and MMPretrain's ImageCaptionInferencer
# run the test pipeline; its first transform holds the default prompt.
_base_ = [
    './flamingo-tiny_shapes_mixture.py', '../_base_/datasets/shapes_fewshot.py'
]

# `_scope_`: MMPretrain's `get_model` builds in its own scope; inference
# sees each image once: no token cache (training's)
model = dict(
    _scope_='mmflamingo',
    task='caption',
    backbone=dict(cache_size=0),
    generation_cfg=dict(num_beams=1, max_new_tokens=32))

test_pipeline = [
    dict(type='mmflamingo.apis.FlamingoPromptInputs', prompt='<image>Output:'),
    dict(type='mmflamingo.LoadMedia'),
    dict(type='mmflamingo.ResizeMedia', size={{_base_.image_size}}),
    dict(type='mmflamingo.PackFlamingoInputs', meta_keys=['question']),
]
test_dataloader = dict(
    dataset=dict(
        type='mmflamingo.KarpathyCaptionDataset', pipeline=test_pipeline))
# the frames inference_model takes from a video file, as in training
video_sampling = dict(num_frames=4, fps=0.5)
# the few-shot prompt of demo/fewshot_demo.py: the world's, as evaluated
fewshot_prompt = {{_base_.caption_prompt}}
