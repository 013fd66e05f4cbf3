"""The shapes world: a procedurally generated multimodal world of coloured
shapes, written in the formats the real datasets read (captions, VQA, an
in-context binding task, interleaved documents, image- and video-text pairs,
a text corpus), deterministic by seed.
"""
from .language import (NameGenerator, canonical_caption, caption_references,
                       vqa_questions, world_vocabulary)
from .scenes import (COLOURS, SHAPES, Shape, render_scene, render_video,
                     sample_scene, sample_shape)
from .text_episodes import ShapesTextEpisodes
from .writer import SCALES, write_shapes_world

__all__ = [
    'COLOURS', 'SCALES', 'SHAPES', 'NameGenerator', 'Shape',
    'ShapesTextEpisodes', 'canonical_caption', 'caption_references',
    'render_scene', 'render_video', 'sample_scene', 'sample_shape',
    'vqa_questions', 'world_vocabulary', 'write_shapes_world'
]
