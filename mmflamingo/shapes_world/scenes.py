"""Scenes of the shapes world: what is drawn, where, and the pixels.

A scene is 1-3 coloured shapes on a light background, each in its own slot
(``left``, ``right``, ``top``, ``bottom``, ``center``) of a 64x64 image, in
the canonical order the captions use: left to right, then top to bottom.
Shapes are drawn at ``SUPERSAMPLE`` times the size and box-filtered down, so
edges are anti-aliased while a shape's inside keeps its exact colour.
"""
import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 64
SUPERSAMPLE = 4
BACKGROUND = (245, 245, 240)
SHAPES = ('circle', 'square', 'triangle', 'diamond', 'cross')
COLOURS: Dict[str, Tuple[int, int, int]] = {
    'red': (220, 40, 40),
    'green': (40, 170, 60),
    'blue': (50, 80, 220),
    'yellow': (230, 200, 40),
    'purple': (140, 60, 190),
    'orange': (240, 140, 30),
}
# half the side of a shape's bounding box, in pixels of a 64x64 image
SIZES: Dict[str, int] = {'small': 5, 'large': 9}
# slot centres: 20 px between the centre and a side slot leave room for two
# large shapes (2 x 9) and the jitter
POSITIONS: Dict[str, Tuple[int, int]] = {
    'left': (12, 32),
    'right': (52, 32),
    'top': (32, 12),
    'bottom': (32, 52),
    'center': (32, 32),
}
MAX_JITTER = 1
DIRECTIONS: Dict[str, Tuple[int, int]] = {
    'right': (1, 0),
    'left': (-1, 0),
    'up': (0, -1),
    'down': (0, 1),
}

__all__ = [
    'BACKGROUND', 'COLOURS', 'DIRECTIONS', 'IMAGE_SIZE', 'POSITIONS', 'SHAPES',
    'SIZES', 'Shape', 'Scene', 'sample_scene', 'sample_shape', 'scene_key',
    'render_scene', 'render_video'
]


@dataclass(frozen=True)
class Shape:
    """One drawn shape.

    Args:
        shape (str): One of :data:`SHAPES`.
        colour (str): One of :data:`COLOURS`.
        size (str): One of :data:`SIZES`.
        position (str): One of :data:`POSITIONS`.
        dx (int): Horizontal jitter in pixels. Defaults to 0.
        dy (int): Vertical jitter in pixels. Defaults to 0.
    """

    shape: str
    colour: str
    size: str
    position: str
    dx: int = 0
    dy: int = 0

    @property
    def centre(self) -> Tuple[int, int]:
        """The shape's centre ``(x, y)`` in pixels."""
        x, y = POSITIONS[self.position]
        return x + self.dx, y + self.dy


Scene = Tuple[Shape, ...]


def _canonical(shapes: Sequence[Shape]) -> Scene:
    """Left to right, then top to bottom: the order captions name them."""
    return tuple(sorted(shapes, key=lambda s: POSITIONS[s.position]))


def sample_shape(rng: random.Random,
                 shape: Optional[str] = None,
                 position: Optional[str] = None) -> Shape:
    """A random shape (or of the given type), colour, size and jitter.

    Args:
        rng (random.Random): The random stream.
        shape (str, optional): The shape type; random when None.
            Defaults to None.
        position (str, optional): The slot; random when None.
            Defaults to None.

    Returns:
        Shape: The shape.
    """
    return Shape(
        shape=shape or rng.choice(SHAPES),
        colour=rng.choice(sorted(COLOURS)),
        size=rng.choice(sorted(SIZES)),
        position=position or rng.choice(sorted(POSITIONS)),
        dx=rng.randint(-MAX_JITTER, MAX_JITTER),
        dy=rng.randint(-MAX_JITTER, MAX_JITTER))


def sample_scene(rng: random.Random, max_shapes: int = 3) -> Scene:
    """A scene of 1 to ``max_shapes`` shapes in distinct slots.

    No two shapes of a scene share both shape type and colour, so that
    "the red circle" always names one shape.

    Args:
        rng (random.Random): The random stream.
        max_shapes (int): The most shapes in a scene. Defaults to 3.

    Returns:
        Scene: The shapes in canonical order.
    """
    num = rng.randint(1, max_shapes)
    slots = rng.sample(sorted(POSITIONS), num)
    shapes: List[Shape] = []
    for slot in slots:
        while True:
            candidate = sample_shape(rng, position=slot)
            if all((s.shape, s.colour) != (candidate.shape, candidate.colour)
                   for s in shapes):
                break
        shapes.append(candidate)
    return _canonical(shapes)


def scene_key(scene: Scene) -> Tuple[Tuple[str, str, str, str], ...]:
    """What a scene shows, without the jitter: equal keys, equal captions.
    """
    return tuple((s.shape, s.colour, s.size, s.position) for s in scene)


def _draw(draw: ImageDraw.ImageDraw, shape: str, colour: Tuple[int, int, int],
          centre: Tuple[float, float], half: float) -> None:
    """Draw one shape on a (supersampled) canvas."""
    x, y = centre
    if shape == 'circle':
        draw.ellipse((x - half, y - half, x + half, y + half), fill=colour)
    elif shape == 'square':
        draw.rectangle((x - half, y - half, x + half, y + half), fill=colour)
    elif shape == 'triangle':
        draw.polygon([(x, y - half), (x + half, y + half),
                      (x - half, y + half)],
                     fill=colour)
    elif shape == 'diamond':
        draw.polygon([(x, y - half), (x + half, y), (x, y + half),
                      (x - half, y)],
                     fill=colour)
    elif shape == 'cross':
        arm = 0.35 * half
        draw.rectangle((x - half, y - arm, x + half, y + arm), fill=colour)
        draw.rectangle((x - arm, y - half, x + arm, y + half), fill=colour)
    else:
        raise ValueError(f'unknown shape {shape!r}; expected one of {SHAPES}')


def _render(items: Sequence[Tuple[str, str, Tuple[float, float], float]],
            size: int) -> np.ndarray:
    """``(size, size, 3)`` uint8 image of ``(shape, colour, centre, half)``
    items given in pixels of a ``size`` image."""
    scale = SUPERSAMPLE
    canvas = Image.new('RGB', (size * scale, size * scale), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for shape, colour, (x, y), half in items:
        # pixel (i, j) of the image covers [i, i + 1): its centre is i + 0.5
        _draw(draw, shape, COLOURS[colour],
              ((x + 0.5) * scale, (y + 0.5) * scale), half * scale)
    return np.asarray(canvas.resize((size, size), Image.BOX))


def render_scene(scene: Scene) -> np.ndarray:
    """The ``(64, 64, 3)`` uint8 RGB image of a scene."""
    return _render([(s.shape, s.colour, s.centre, SIZES[s.size])
                    for s in scene], IMAGE_SIZE)


def render_video(shape: Shape,
                 direction: str,
                 num_frames: int = 8) -> List[np.ndarray]:
    """Frames of ``shape`` crossing the image in ``direction``.

    The shape starts near one edge, at its slot's other coordinate, and
    moves by the same step every frame to near the opposite edge.

    Args:
        shape (Shape): The shape (its position gives the fixed coordinate).
        direction (str): One of :data:`DIRECTIONS`.
        num_frames (int): Frames. Defaults to 8.

    Returns:
        list[np.ndarray]: ``num_frames`` ``(64, 64, 3)`` uint8 frames.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f'unknown direction {direction!r}; expected one of '
                         f'{tuple(DIRECTIONS)}')
    ux, uy = DIRECTIONS[direction]
    half = SIZES[shape.size]
    start, end = half + 2, IMAGE_SIZE - 1 - half - 2
    x0, y0 = shape.centre
    frames = []
    for t in range(num_frames):
        along = start + (end - start) * t / max(num_frames - 1, 1)
        along = along if ux + uy > 0 else IMAGE_SIZE - 1 - along
        centre = (along, y0) if ux else (x0, along)
        frames.append(
            _render([(shape.shape, shape.colour, centre, half)], IMAGE_SIZE))
    return frames
