"""The Flamingo algorithm end to end, on a tiny LLaMA with the gates open."""
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.optim import OptimWrapper

from mmflamingo.datasets.base_dataset import unusable_sample
from mmflamingo.models.data_preprocessor import CLIP_MEAN, CLIP_STD
from mmflamingo.models.utils import build_labels
from mmflamingo.registry import MODELS
from mmflamingo.testing import tiny_flamingo_config

IMAGE = '<image>'
EOC = '<|endofchunk|>'

# hand-annotated: each piece of text and the image its tokens see
PIECES_3_IMAGES = [
    ('a cat ', 0),
    (IMAGE, 1),
    ('a photo of a red circle.' + EOC, 1),
    (IMAGE, 2),
    ('a blue square' + EOC, 2),
    (IMAGE, 3),
    ('two yellow stars', 3),
]
PIECES_1_IMAGE = [
    ('Question: what colour? ', 0),
    (IMAGE, 1),
    ('Short answer:', 1),
]


def join(pieces):
    return ''.join(text for text, _ in pieces)


def images_for(num_media, num_frames=1, seed=0, batch=1):
    """Normalised-looking float images ``(B, N, T, 3, 32, 32)``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(
        batch, num_media, num_frames, 3, 32, 32, generator=generator)


@pytest.fixture(scope='module')
def model(build_flamingo):
    """Gates open: the text sees the images from the first layer on."""
    return build_flamingo('llama', gates=1.0)


@pytest.fixture(scope='module')
def model_all_previous(build_flamingo):
    return build_flamingo('llama', gates=1.0, only_attend_last_media=False)


def expected_index(model, pieces):
    """Token ids and hand-annotated image index of each token."""
    ids, index = [], []
    for text, image in pieces:
        piece = model.tokenizer(text, add_special_tokens=False)['input_ids']
        ids += piece
        index += [image] * len(piece)
    # pieces split at special tokens, so they tokenize as the whole text
    assert model.tokenizer(join(pieces))['input_ids'] == ids
    return torch.tensor(ids), torch.tensor(index)


class Recorder:
    """Records the first cross-attention's inputs and outputs per LM call.

    Its block sits before decoder layer 0, where the hidden states are still
    the text embeddings: its output shows what each token sees.
    """

    def __init__(self, model):
        head = model.head
        attn = head.xattn_blocks['0'].attn
        self.index, self.out = [], []

        def record(module, args, out):
            # the cross-attention's output, and the image index of the call
            self.index.append(head._visual.media_index)
            self.out.append(out)

        self.handles = [attn.to_out.register_forward_hook(record)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


# -------------------------------------------------------- which image
def test_media_index_loss_and_generation(model, make_samples):
    ids_a, index_a = expected_index(model, PIECES_3_IMAGES)
    ids_b, index_b = expected_index(model, PIECES_1_IMAGE)
    samples = make_samples(
        [join(PIECES_3_IMAGES), join(PIECES_1_IMAGE)], num_media=[3, 1])
    images = images_for(3, batch=2)

    # training: right padding
    with Recorder(model) as rec, torch.no_grad():
        model(images, samples, mode='tensor')
    (media_index, ) = rec.index
    assert torch.equal(media_index[0, :len(ids_a)], index_a)
    assert torch.equal(media_index[1, :len(ids_b)], index_b)

    # generation with the KV cache: the prompt, left-padded, then the new
    # tokens, over however many LM calls
    with Recorder(model) as rec:
        model.predict(images, samples, max_new_tokens=4, min_new_tokens=4)
    prompt_len = len(ids_a)
    media_index = torch.cat(rec.index, dim=1)
    out = torch.cat(rec.out, dim=1)
    assert media_index.shape == (2, prompt_len + 3)  # the last is not fed
    assert torch.equal(media_index[0, :prompt_len], index_a)
    assert torch.equal(media_index[1, prompt_len - len(ids_b):prompt_len],
                       index_b)
    assert media_index[1, :prompt_len - len(ids_b)].eq(0).all()
    # generated tokens keep seeing each sample's last image
    assert torch.equal(media_index[:, prompt_len:],
                       torch.tensor([[3] * 3, [1] * 3]))
    assert out[:, prompt_len:].abs().amax(-1).gt(0).all()


@pytest.mark.parametrize('last_only', [True, False])
def test_changing_image_k(last_only, model, model_all_previous, make_samples):
    flamingo = model if last_only else model_all_previous
    ids, index = expected_index(flamingo, PIECES_3_IMAGES)
    samples = make_samples([join(PIECES_3_IMAGES)], num_media=[3])
    images = images_for(3)
    changed = images.clone()
    changed[0, 1] = images_for(1, seed=1)[0, 0]  # image 2

    with Recorder(flamingo) as rec, torch.no_grad():
        logits = flamingo(images, samples, mode='tensor')[0]
        new_logits = flamingo(changed, samples, mode='tensor')[0]
    attn_diff = (rec.out[0] - rec.out[1])[0].abs().amax(-1)
    logits_diff = (logits - new_logits).abs().amax(-1)

    sees_image_2 = (index == 2) if last_only else (index >= 2)
    assert torch.equal(attn_diff[~sees_image_2],
                       torch.zeros_like(attn_diff[~sees_image_2]))
    assert attn_diff[sees_image_2].gt(1e-4).all()
    if last_only:
        # the tokens after image 3 see image 3 only
        assert sees_image_2[index == 3].logical_not().all()

    # logits: tokens before image 2 are unaffected; from its marker on, all
    # are (through the self-attention too)
    before = index < 2
    assert logits_diff[before].max() == 0
    assert logits_diff[~before].gt(1e-4).all()


def test_text_before_the_first_image_sees_nothing(model, make_samples):
    ids, index = expected_index(model, PIECES_3_IMAGES)
    samples = make_samples([join(PIECES_3_IMAGES)], num_media=[3])
    with torch.no_grad():
        logits = model(images_for(3), samples, mode='tensor')[0]
        other = model(images_for(3, seed=5), samples, mode='tensor')[0]
        # the text with each <image> replaced by another one-token marker:
        # no image, and the same shapes (the same kernels run), so the text
        # before the first image is computed exactly as above
        no_image = join(PIECES_3_IMAGES).replace(IMAGE, EOC)
        text_only = model(
            None, make_samples([no_image], num_media=[0]), mode='tensor')[0]
    before = index == 0
    assert torch.equal(logits[before], other[before])
    assert (logits[~before] - other[~before]).abs().amax(-1).gt(1e-4).all()
    # and it reads exactly as text without images
    assert text_only.shape == logits.shape
    assert torch.equal(logits[before], text_only[before])


# ------------------------------------------------------- media shapes
def test_video_and_several_images(build_flamingo, make_samples):
    model = build_flamingo('llama', gates=1.0, neck_cfg=dict(max_num_frames=4))
    ids, index = expected_index(model, PIECES_3_IMAGES)
    samples = make_samples(
        [join(PIECES_3_IMAGES), join(PIECES_1_IMAGE)], num_media=[3, 1])
    videos = images_for(3, num_frames=3, batch=2)
    assert model.extract_media(videos).shape == (2, 3, 4, 32)

    with torch.no_grad():
        logits = model(videos, samples, mode='tensor')
        loss = model(videos, samples, mode='loss')['loss']
        # change one frame of video 1 of sample 0
        changed = videos.clone()
        changed[0, 0, 2] = images_for(1, seed=3)[0, 0, 0]
        new_logits = model(changed, samples, mode='tensor')
    assert torch.isfinite(loss)
    diff = (logits - new_logits).abs().amax(-1)
    assert diff[0, :len(ids)][index == 0].max() == 0
    assert diff[0, :len(ids)][index > 0].gt(1e-4).all()
    assert diff[1].max() == 0  # the other sample is untouched

    # so does the frame order, through the temporal embeddings
    reordered = videos[:, :, [2, 1, 0]]
    with torch.no_grad():
        assert not torch.allclose(
            model(reordered, samples, mode='tensor'), logits)
    model.predict(videos, samples)
    assert all(isinstance(s.pred_caption, str) for s in samples)


def test_thirty_two_images(model, make_images, make_samples):
    text = (IMAGE + 'a photo of a cat.' + EOC) * 31 + IMAGE + 'a photo of'
    data = dict(
        inputs=[make_images(32, 1, 3, 32, 32)],
        data_samples=make_samples([text]))
    data = model.data_preprocessor(data)
    assert data['images'].shape == (1, 32, 1, 3, 32, 32)
    with torch.no_grad():
        loss = model(**data, mode='loss')['loss']
    assert torch.isfinite(loss)
    (sample, ) = model(**data, mode='predict')
    assert isinstance(sample.pred_caption, str)


def test_more_markers_than_images(model, make_samples):
    samples = make_samples(
        ['<image>a cat', '<image>a dog<|endofchunk|><image>a bird'],
        num_media=[1, 1],
        img_path=['a.jpg', 'b.jpg'])
    for mode in ('loss', 'predict', 'tensor'):
        with pytest.raises(
                ValueError,
                match=r'sample 1 \(b.jpg\) has 2 <image> markers '
                'but 1 images'):
            model(images_for(1, batch=2), samples, mode=mode)


# ------------------------------------------------------------ labels
def test_build_labels():
    M, E, P = 100, 101, 0  # <image>, <|endofchunk|>, pad
    input_ids = torch.tensor([
        # text, image, caption, end, text, image, caption, end, trailing
        [5, M, 6, 7, E, 8, M, 9, E, 10, P, P],
        # left padding, then two images in a row
        [P, P, M, M, 11, E, 12, 13, 14, 15, 16, 17],
        # no image at all
        [5, 6, 7, E, 8, 9, 10, 11, 12, 13, 14, 15],
        # a chunk left open by truncation
        [M, 21, 22, 23, E, M, 24, 25, 26, 27, 28, 29],
    ])
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, -2:] = 0
    attention_mask[1, :2] = 0
    X = -100
    expected = torch.tensor([
        [X, X, 6, 7, E, X, X, 9, E, X, X, X],
        [X, X, X, X, 11, E, X, X, X, X, X, X],
        [X, X, X, X, X, X, X, X, X, X, X, X],
        [X, 21, 22, 23, E, X, 24, 25, 26, 27, 28, 29],
    ])
    labels = build_labels(input_ids, attention_mask, M, E)
    assert torch.equal(labels, expected)


def test_loss_uses_the_labels(model, make_samples):
    samples = make_samples(
        [join(PIECES_3_IMAGES), join(PIECES_1_IMAGE)], num_media=[3, 1])
    images = images_for(3, batch=2)
    with torch.no_grad():
        loss = model(images, samples, mode='loss')['loss']
        logits = model(images, samples, mode='tensor')
    text = model.tokenizer([s.text for s in samples],
                           padding='longest',
                           return_tensors='pt')
    labels = build_labels(text['input_ids'], text['attention_mask'],
                          model.tokens.media, model.tokens.end_of_chunk)
    learned = labels[:, 1:] != -100
    logprobs = logits[:, :-1].log_softmax(-1).gather(
        -1, labels[:, 1:].clamp(min=0)[..., None])[..., 0]
    # The loss projects the learned positions only, (1, N, D) against the
    # (B, S, D) here: another matmul shape, which may round differently.
    # fp32 logits up to ~15 then differ by up to ~1e-4 (seen between cached
    # and uncached calls); the loss (~13 here) is their mean over N tokens.
    torch.testing.assert_close(
        loss, -logprobs[learned].mean(), rtol=1e-5, atol=1e-5)


def test_truncation_encodes_only_the_media_it_keeps(model, make_samples,
                                                    monkeypatch):
    kept = join(PIECES_3_IMAGES[:5])  # the text up to the third image
    limit = len(model.tokenizer(kept)['input_ids'])
    texts = [join(PIECES_3_IMAGES), join(PIECES_1_IMAGE)]
    assert len(model.tokenizer(texts[1])['input_ids']) < limit
    images = images_for(3, batch=2)
    encoded = []
    handle = model.backbone.register_forward_hook(
        lambda module, args, out: encoded.append(args[0].shape[:2]))
    try:
        with torch.no_grad():
            monkeypatch.setattr(model, 'max_text_length', limit)
            cut = model.loss(images, make_samples(texts, num_media=[3, 1]))
            monkeypatch.setattr(model, 'max_text_length', None)
            samples = make_samples([kept, texts[1]], num_media=[2, 1])
            whole = model.loss(images[:, :2], samples)
    finally:
        handle.remove()
    # two images of the first sample and one of the second: not the third
    # that truncation cut, nor the second sample's padding
    assert encoded == [(1, 3), (1, 3)]
    assert cut['num_truncated'] == 1 and whole['num_truncated'] == 0
    torch.testing.assert_close(cut['loss'], whole['loss'])
    assert cut['num_tokens'] == whole['num_tokens']


def test_loss_decreases(build_flamingo, make_images, make_samples):
    # gates closed, as built; a milder LM init, whose loss starts near
    # log(vocabulary size) rather than in saturated logits
    model = build_flamingo(
        'llama', lm_config=dict(initializer_range=0.1)).train()
    texts = [
        '<image>a photo of a red circle.<|endofchunk|>'
        '<image>a blue square next to a green triangle.<|endofchunk|>',
        join(PIECES_1_IMAGE) + ' red<|endofchunk|>',
    ]
    data = dict(
        inputs=[
            make_images(2, 1, 3, 32, 32),
            make_images(1, 1, 3, 32, 32, seed=1)
        ],
        data_samples=make_samples(texts))
    params = [p for p in model.parameters() if p.requires_grad]
    optim_wrapper = OptimWrapper(torch.optim.Adam(params, lr=1e-2))
    losses = [
        model.train_step(data, optim_wrapper)['loss'].item() for _ in range(20)
    ]
    assert losses[-1] < 0.5 * losses[0], [round(x, 2) for x in losses]
    assert losses[-1] < losses[10] < losses[0]
    # the gates opened
    gates = [b.attn_gate.item() for b in model.head.xattn_blocks.values()]
    assert all(g != 0 for g in gates)


# ----------------------------------------------------------- predict
@pytest.mark.parametrize('task, field', [('caption', 'pred_caption'),
                                         ('vqa', 'pred_answer')])
def test_predict_writes_the_task_field(task, field, build_flamingo,
                                       make_samples):
    model = build_flamingo('llama', gates=1.0, model_cfg=dict(task=task))
    texts = [join(PIECES_3_IMAGES), join(PIECES_1_IMAGE)]
    samples = model.predict(
        images_for(3, batch=2), make_samples(texts, num_media=[3, 1]))
    (other, ) = {'pred_caption', 'pred_answer'} - {field}
    for sample in samples:
        assert isinstance(sample.get(field), str)
        assert other not in sample

    # it is the decoded generation, stopped at <|endofchunk|>
    prompt = model.tokenizer(
        texts, padding='longest', padding_side='left', return_tensors='pt')
    generated = model.head.generate(
        prompt['input_ids'],
        prompt['attention_mask'],
        model.extract_media(images_for(3, batch=2)),
        num_media=torch.tensor([3, 1]),
        **model.generation_cfg)
    decoded = model.tokenizer.batch_decode(
        generated[:, prompt['input_ids'].shape[1]:], skip_special_tokens=True)
    assert [s.get(field) for s in samples] == [t.strip() for t in decoded]
    assert any(s.get(field) for s in samples)
    # one sequence per sample: no list field
    assert all(field + 's' not in s for s in samples)


@pytest.mark.parametrize('generation', [
    dict(num_beams=3, num_return_sequences=2),
    dict(do_sample=True, num_return_sequences=3),
])
def test_predict_returns_each_samples_sequences(generation, model,
                                                make_samples):
    """``generate`` returns B * R rows, sample-major: sample i gets rows
    iR..iR+R-1, not row i."""
    texts = [join(PIECES_3_IMAGES), join(PIECES_1_IMAGE)]
    images = images_for(3, batch=2)
    num_seqs = generation['num_return_sequences']
    kwargs = dict(max_new_tokens=5, min_new_tokens=5, **generation)
    torch.manual_seed(0)
    samples = model.predict(images, make_samples(texts, num_media=[3, 1]),
                            **kwargs)

    # the same computation through the head, same shapes and seed
    prompt = model.tokenizer(
        texts, padding='longest', padding_side='left', return_tensors='pt')
    torch.manual_seed(0)
    generated = model.head.generate(
        prompt['input_ids'],
        prompt['attention_mask'],
        model.extract_media(images),
        num_media=torch.tensor([3, 1]),
        return_dict_in_generate=True,
        output_scores=True,
        **kwargs)
    decoded = [
        t.strip() for t in model.tokenizer.batch_decode(
            generated.sequences[:, prompt['input_ids'].shape[1]:],
            skip_special_tokens=True)
    ]
    assert len(decoded) == 2 * num_seqs
    assert [s.pred_caption for s in samples] == decoded[::num_seqs]
    for i, sample in enumerate(samples):
        expected = decoded[i * num_seqs:(i + 1) * num_seqs]
        assert sample.pred_captions == expected, i
    # control: the two samples' sequences differ, so a pairing with the
    # wrong rows would show
    assert set(samples[0].pred_captions).isdisjoint(samples[1].pred_captions)
    if generation.get('num_beams', 1) > 1:
        # beam search returns each sample's beams best first
        scores = generated.sequences_scores.view(2, num_seqs)
        assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_bad_task_and_mode(build_flamingo, model, make_samples):
    with pytest.raises(ValueError, match='task'):
        build_flamingo('llama', model_cfg=dict(task='detection'))
    with pytest.raises(RuntimeError, match='invalid mode'):
        model(None, make_samples(['a cat']), mode='nonsense')


def test_score_mode(model, make_samples):
    samples = make_samples(
        [join(PIECES_3_IMAGES), join(PIECES_1_IMAGE)],
        num_media=[3, 1],
        candidates=[[' red', ' blue'], [' three', ' a cat']])
    samples = model(images_for(3, batch=2), samples, mode='score')
    for sample in samples:
        assert sample.pred_scores.shape == (2, )
        assert (sample.pred_scores < 0).all()

    # samples may have different numbers of candidates
    samples = make_samples(['a cat', 'a dog'],
                           num_media=[0, 0],
                           candidates=[[' red'], [' three', ' a cat']])
    scored = model(None, samples, mode='score')
    assert [s.pred_scores.shape for s in scored] == [(1, ), (2, )]
    assert all(s.pred_scores.isfinite().all() for s in scored)
    samples = make_samples(['a cat'], num_media=[0], candidates=[[' red', '']])
    with pytest.raises(ValueError, match="candidate '' has no tokens"):
        model(None, samples, mode='score')


# ----------------------------------------------------- preprocessing
def test_data_preprocessor(model, make_images, make_samples):
    inputs = [
        make_images(2, 1, 3, 32, 32),
        make_images(0, 1, 3, 32, 32),
        make_images(1, 1, 3, 32, 32, seed=1),
    ]
    samples = make_samples(['a', 'b', 'c'])
    data = model.data_preprocessor(dict(inputs=inputs, data_samples=samples))
    images = data['images']
    assert images.shape == (3, 2, 1, 3, 32, 32)
    assert images.dtype == torch.float32
    assert [s.num_media for s in data['data_samples']] == [2, 0, 1]
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    torch.testing.assert_close(images[0], (inputs[0].float() - mean) / std)
    torch.testing.assert_close(images[2, :1], (inputs[2].float() - mean) / std)
    # padding is zero
    assert images[1].eq(0).all() and images[2, 1].eq(0).all()


@pytest.mark.parametrize('shape', [(1, 1, 3, 16, 16), (1, 2, 3, 32, 32)])
def test_data_preprocessor_mismatched_frames(shape, model, make_images,
                                             make_samples):
    inputs = [make_images(1, 1, 3, 32, 32), make_images(*shape)]
    with pytest.raises(ValueError, match=r'same \(T, C, H, W\)'):
        model.data_preprocessor(
            dict(inputs=inputs, data_samples=make_samples(['a', 'b'])))


def test_text_only_batch(model, make_images, make_samples):
    texts = ['a photo of a red circle.', 'Question: how many shapes?']
    data = model.data_preprocessor(
        dict(
            inputs=[make_images(0, 1, 3, 32, 32)] * 2,
            data_samples=make_samples(texts)))
    assert data['images'] is None
    assert [s.num_media for s in data['data_samples']] == [0, 0]
    with torch.no_grad():
        # no image: no token to learn (build_labels), and no 0 / 0 either
        assert model(**data, mode='loss')['loss'] == 0
        logits = model(**data, mode='tensor')
    num_tokens = max(len(model.tokenizer(t)['input_ids']) for t in texts)
    assert logits.shape == (2, num_tokens, len(model.tokenizer))
    for sample in model(**data, mode='predict'):
        assert isinstance(sample.pred_caption, str)


def test_data_preprocessor_drops_skipped_samples(model, make_images,
                                                 make_samples):
    real = dict(
        inputs=make_images(1, 1, 3, 32, 32),
        data_samples=make_samples(['<image>a cat'])[0])
    batch = pseudo_collate(
        [unusable_sample('a.jsonl:1'), real,
         unusable_sample('a.jsonl:3')])
    data = model.data_preprocessor(batch, True)
    assert data['images'].shape == (1, 1, 1, 3, 32, 32)
    assert [s.text for s in data['data_samples']] == ['<image>a cat']
    assert [s.num_media for s in data['data_samples']] == [1]
    empty = model.data_preprocessor(
        pseudo_collate([unusable_sample('a.jsonl:1')]), True)
    assert empty == dict(images=None, data_samples=[])


def test_a_batch_without_media_still_reaches_every_trained_parameter(
        build_flamingo, make_images, make_samples):
    """DDP and DeepSpeed wait for every trained parameter's gradient: a
    batch whose samples were all skipped, or whose markers truncation all
    cut, gives a loss that reaches them all."""
    model = build_flamingo(
        'llama', gates=0.5, model_cfg=dict(max_text_length=4)).train()
    trained = [p for p in model.parameters() if p.requires_grad]

    def pair(text):
        return dict(
            inputs=make_images(1, 1, 3, 32, 32),
            data_samples=make_samples([text])[0])

    real = pseudo_collate([pair('<image>a cat<|endofchunk|>')])
    skipped = pseudo_collate(
        [unusable_sample('a.jsonl:1'),
         unusable_sample('a.jsonl:2')])
    cut = pseudo_collate([pair('a photo of a cat, then <image>a cat')])
    encoded = []
    handle = model.backbone.register_forward_hook(
        lambda module, args, out: encoded.append(args[0].shape[:2]))
    outputs = {}
    try:
        for name, batch in [('skipped', skipped), ('cut', cut),
                            ('mixture', dict(pairs=real, video=skipped)),
                            ('pairs', real)]:
            out = model.loss(**model.data_preprocessor(batch, True))
            # raises if the loss misses a trained parameter
            grads = torch.autograd.grad(out['loss'], trained)
            outputs[name] = (out, grads)
    finally:
        handle.remove()
    assert encoded == [(1, 1), (1, 1)]  # the pairs, in the mixture and alone
    for name in ('skipped', 'cut'):
        out, grads = outputs[name]
        assert out['loss'] == 0 and out['num_tokens'] == 0
        assert all(g.eq(0).all() for g in grads)
    assert 'nll' not in outputs['skipped'][0]
    assert outputs['cut'][0]['num_truncated'] == 1
    mixture, grads = outputs['mixture']
    pairs, pair_grads = outputs['pairs']
    assert 'pairs_nll' in mixture and 'video_nll' not in mixture
    assert mixture['video_tokens'] == 0
    assert mixture['num_tokens'] == mixture['pairs_tokens'] > 0
    torch.testing.assert_close(mixture['loss'], pairs['loss'])
    for g, expected in zip(grads, pair_grads):
        torch.testing.assert_close(g, expected)
    assert any(g.abs().sum() > 0 for g in grads)


def test_tensor_mode_shape(model, make_samples):
    texts = [join(PIECES_3_IMAGES), join(PIECES_1_IMAGE)]
    with torch.no_grad():
        logits = model(
            images_for(3, batch=2),
            make_samples(texts, num_media=[3, 1]),
            mode='tensor')
    num_tokens = len(model.tokenizer(texts[0])['input_ids'])
    assert logits.shape == (2, num_tokens,
                            model.tokens.num_base + model.tokens.num_new)
    assert len(model.tokenizer) == logits.shape[-1]


def test_gradient_checkpointing_gives_the_same_gradients(
        build_flamingo, make_samples, set_gates):
    """Recomputing the frozen LM in backward changes no loss or gradient."""
    texts = [
        '<image>Output: a red circle.<|endofchunk|>',
        '<image>Output: two<|endofchunk|><image>Output: blue'
    ]
    images = images_for(2, batch=2)
    grads = {}
    for checkpointing in (False, True):
        model = build_flamingo(
            'llama', gates=0.5, gradient_checkpointing=checkpointing)
        model.train()
        # transformers checkpoints only in train mode
        assert model.head.lm.training == checkpointing
        loss = model.loss(images, make_samples(texts, num_media=[1, 2]))
        loss['loss'].backward()
        grads[checkpointing] = (loss['loss'].detach(), {
            name: p.grad.clone()
            for name, p in model.named_parameters() if p.requires_grad
        })
    assert grads[True][1].keys() == grads[False][1].keys()
    torch.testing.assert_close(grads[True][0], grads[False][0])
    for name, grad in grads[False][1].items():
        torch.testing.assert_close(grads[True][1][name], grad, msg=name)


def test_frozen_weights_in_bf16_trained_in_fp32(tokenizer_dir, make_samples,
                                                set_gates):
    """Frozen LM and ViT stored in bf16; the trained parts keep fp32."""
    cfg = tiny_flamingo_config(tokenizer_dir)
    cfg['backbone']['dtype'] = 'bfloat16'
    cfg['head']['lm']['torch_dtype'] = 'bfloat16'
    torch.manual_seed(0)
    model = MODELS.build(cfg).train()
    set_gates(model, 0.5)  # open, so that the images reach the loss
    for name, param in model.named_parameters():
        expected = torch.float32 if param.requires_grad else torch.bfloat16
        assert param.dtype == expected, name
    texts = ['<image>Output: a red circle.<|endofchunk|>']
    loss = model.loss(images_for(1), make_samples(texts, num_media=[1]))
    loss['loss'].backward()
    assert torch.isfinite(loss['loss'])
    grads = {
        name: p.grad
        for name, p in model.named_parameters() if p.requires_grad
    }
    assert all(g is not None and g.dtype == torch.float32
               for g in grads.values())
    # the perceiver, the blocks and the new token rows all learn
    assert grads['neck.latents'].abs().sum() > 0
    assert any(g.abs().sum() > 0 for n, g in grads.items()
               if n.startswith('head.xattn_blocks'))
    assert any(g.abs().sum() > 0 for n, g in grads.items()
               if n.endswith('new_weight'))
