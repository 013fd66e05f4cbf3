# The tiny Flamingo trained on the shapes world, answering a question about
# an image 0-shot:
#   python demo/image_demo.py demo/demo_shapes.png \
#       --question 'What color is the circle?'
# Same weights as the captioning config; the prompt asks the question and
# the answer is short.
_base_ = ['./flamingo-tiny_shapes_caption.py']

model = dict(task='vqa', generation_cfg=dict(num_beams=1, max_new_tokens=5))

test_pipeline = [
    dict(
        type='mmflamingo.apis.FlamingoPromptInputs',
        prompt='<image>Question: {question} Short answer:'),
    dict(type='mmflamingo.LoadMedia'),
    dict(type='mmflamingo.ResizeMedia', size={{_base_.image_size}}),
    dict(type='mmflamingo.PackFlamingoInputs', meta_keys=['question']),
]
test_dataloader = dict(
    dataset=dict(type='mmflamingo.VQADataset', pipeline=test_pipeline))
