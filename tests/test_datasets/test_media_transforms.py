import numpy as np
import pytest
import torch
from PIL import Image

from mmflamingo.datasets.transforms import (LoadMedia, PackFlamingoInputs,
                                            ResizeMedia)


def test_load_media_images_and_video(tmp_path):
    path = tmp_path / 'a.png'
    Image.new('RGB', (10, 8), (255, 0, 0)).save(path)
    frame = np.full((8, 10, 3), 7, dtype=np.uint8)
    results = LoadMedia()(dict(media=[str(path), [frame, frame, frame]]))
    image, video = results['media']
    assert len(image) == 1 and image[0].shape == (8, 10, 3)
    assert image[0][0, 0].tolist() == [255, 0, 0]
    assert len(video) == 3 and (video[2] == 7).all()


def test_load_media_errors_name_the_file(tmp_path):
    missing = str(tmp_path / 'nope.jpg')
    with pytest.raises(FileNotFoundError, match='nope.jpg'):
        LoadMedia()(dict(media=[missing]))
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'not a png')
    with pytest.raises(ValueError, match='broken.png'):
        LoadMedia()(dict(media=[str(broken)]))


def test_resize_media_short_side_and_centre_crop():
    # a wide image: a red left half, a blue right half, a green centre strip
    frame = np.zeros((20, 60, 3), dtype=np.uint8)
    frame[:, :30] = (255, 0, 0)
    frame[:, 30:] = (0, 0, 255)
    frame[:, 25:35] = (0, 255, 0)
    out = ResizeMedia(10)(dict(media=[[frame]]))['media'][0][0]
    assert out.shape == (10, 10, 3)
    # the crop keeps the centre (green), not the red or blue ends
    assert out[5, 5].tolist() == [0, 255, 0]


def test_pack_stacks_media_and_text():
    frames = [np.full((4, 4, 3), i, dtype=np.uint8) for i in range(2)]
    packed = PackFlamingoInputs(meta_keys=['img_path'])(
        dict(media=[frames, frames], text='<image>hi', img_path='x.png'))
    assert packed['inputs'].shape == (2, 2, 3, 4, 4)
    assert packed['inputs'].dtype == torch.uint8
    assert int(packed['inputs'][0, 1, 0, 0, 0]) == 1
    assert packed['data_samples'].text == '<image>hi'
    assert packed['data_samples'].img_path == 'x.png'


def test_pack_text_only_and_mixed_frame_counts():
    packed = PackFlamingoInputs()(dict(media=[], text='no images'))
    assert packed['inputs'].shape[0] == 0
    frame = np.zeros((4, 4, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match='frame counts'):
        PackFlamingoInputs()(dict(media=[[frame], [frame, frame]], text=''))
