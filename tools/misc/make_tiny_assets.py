"""Write the files the tiny configs need: a BPE tokenizer and demo images.

Usage: python tools/misc/make_tiny_assets.py [OUT_DIR]
(default work_dirs/tiny_assets; existing files are kept).
"""
import argparse
import os
import os.path as osp

from PIL import Image, ImageDraw

from mmflamingo.testing import build_tiny_tokenizer

SHAPES = [('red', 'circle'), ('blue', 'square'), ('green', 'triangle'),
          ('yellow', 'circle')]


def draw_shape(colour: str, shape: str, size: int = 96) -> Image.Image:
    """One shape of one colour on white, centred."""
    img = Image.new('RGB', (size, size), 'white')
    draw = ImageDraw.Draw(img)
    box = (size // 4, size // 4, 3 * size // 4, 3 * size // 4)
    if shape == 'circle':
        draw.ellipse(box, fill=colour)
    elif shape == 'square':
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(size // 2, size // 4), (size // 4, 3 * size // 4),
                      (3 * size // 4, 3 * size // 4)],
                     fill=colour)
    return img


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('out_dir', nargs='?', default='work_dirs/tiny_assets')
    args = parser.parse_args()
    build_tiny_tokenizer(osp.join(args.out_dir, 'tokenizer'))
    image_dir = osp.join(args.out_dir, 'images')
    os.makedirs(image_dir, exist_ok=True)
    for colour, shape in SHAPES:
        path = osp.join(image_dir, f'{colour}_{shape}.png')
        if not osp.exists(path):
            draw_shape(colour, shape).save(path)
    print(f'tiny assets in {args.out_dir}')


if __name__ == '__main__':
    main()
