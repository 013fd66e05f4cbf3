"""A tiny three-dataset training mixture written to disk in the real formats.

Image-text pairs (jsonl), interleaved documents (MMC4-style jsonl) and
video-text pairs (mp4 + jsonl) of coloured squares, deterministic by seed, so
that the training tests and smoke runs read data through exactly the code
paths real data takes.
"""
import json
import os
import os.path as osp
import random

import numpy as np
from PIL import Image

from mmflamingo.datasets.transforms.video import write_video

COLOURS = {
    'red': (220, 30, 30),
    'green': (30, 180, 60),
    'blue': (40, 60, 220),
    'yellow': (230, 210, 40),
}


def _square(colour, size: int, x: int = None, y: int = None) -> np.ndarray:
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    side = size // 2
    x = (size - side) // 2 if x is None else x
    y = (size - side) // 2 if y is None else y
    img[y:y + side, x:x + side] = COLOURS[colour]
    return img


def write_toy_mixture(root: str,
                      num_samples: int = 8,
                      image_size: int = 32,
                      num_frames: int = 4,
                      seed: int = 0) -> dict:
    """Write ``pairs.jsonl``, ``docs.jsonl`` and ``videos.jsonl`` under root.

    Args:
        root (str): Output directory (created).
        num_samples (int): Samples per dataset. Defaults to 8.
        image_size (int): Image and frame size. Defaults to 32.
        num_frames (int): Frames (= seconds at 1 FPS) per video.
            Defaults to 4.
        seed (int): Seed of the colours and words. Defaults to 0.

    Returns:
        dict: The paths, keyed ``root``, ``pairs``, ``docs``, ``videos``.
    """
    rng = random.Random(seed)
    for sub in ('images', 'videos'):
        os.makedirs(osp.join(root, sub), exist_ok=True)
    colours = list(COLOURS)
    pairs, docs, videos = [], [], []
    for i in range(num_samples):
        colour = rng.choice(colours)
        name = f'{i}_{colour}.png'
        Image.fromarray(_square(colour, image_size)).save(
            osp.join(root, 'images', name))
        pairs.append(dict(image=name, caption=f'a {colour} square.'))

        docs.append(
            dict(
                text_list=[f'this is picture number {k}.' for k in range(3)],
                image_info=[
                    dict(matched_text_index=k, matched_sim=0.3)
                    for k in range(3)
                ]))

        moving = rng.choice(colours)
        step = max(1, (image_size // 2) // num_frames)
        frames = [
            _square(moving, image_size, x=t * step, y=image_size // 4)
            for t in range(num_frames)
        ]
        video = f'{i}_{moving}.mp4'
        write_video(osp.join(root, 'videos', video), frames)
        videos.append(
            dict(video=video, caption=f'a {moving} square moves right.'))
    # every document shows three of the pair images, each before a sentence
    for doc in docs:
        for entry in doc['image_info']:
            entry['image_name'] = pairs[rng.randrange(num_samples)]['image']
    paths = dict(root=root)
    for key, rows in (('pairs', pairs), ('docs', docs), ('videos', videos)):
        paths[key] = osp.join(root, f'{key}.jsonl')
        with open(paths[key], 'w') as f:
            f.writelines(json.dumps(row) + '\n' for row in rows)
    return paths
