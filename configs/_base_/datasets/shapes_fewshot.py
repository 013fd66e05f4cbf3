# The shapes world's few-shot evaluations share its prompts: what follows a
# colon starts with a space, as in every training text of the world, and the
# demos are joined with nothing between them, as in its documents (one
# token sequence for a word wherever it appears; tested in
# tests/test_shapes_world/test_tokens.py). Used with
# ./shapes_mixture.py (its shapes_root and video_pipeline).
caption_prompt = dict(
    demo_template='<image>Output: {caption}<|endofchunk|>',
    query_template='<image>Output:',
    separator='')
qa_prompt = dict(
    demo_template='<image>Question: {question} Short answer: {answer}'
    '<|endofchunk|>',
    query_template='<image>Question: {question} Short answer:',
    separator='')
