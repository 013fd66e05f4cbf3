from .base_dataset import (SAMPLE_ERRORS, BaseFlamingoDataset, FilteredSample,
                           UnusableSample)
from .dataset_wrappers import (LossWeightedDataset, LossWeightedStream,
                               loss_weighted)
from .eval_datasets import (IMAGENET_CLASS_NAMES_FILE, HatefulMemesDataset,
                            ImageFolderClassification, KarpathyCaptionDataset,
                            VQADataset)
from .image_text import CocoCaptionPairs, JsonlImageText, WebDatasetImageText
from .interleaved import MMC4Interleaved, WebDatasetInterleaved
from .shard_stream import StreamCursor
from .streaming import (BaseStreamingDataset, StreamingWebDatasetImageText,
                        StreamingWebDatasetInterleaved)
from .text_corpus import TextCorpusDataset
from .transforms import *  # noqa: F401,F403
from .video_text import VideoTextPairs

__all__ = [
    'BaseFlamingoDataset', 'UnusableSample', 'FilteredSample', 'SAMPLE_ERRORS',
    'LossWeightedDataset', 'LossWeightedStream', 'loss_weighted',
    'BaseStreamingDataset', 'StreamingWebDatasetImageText',
    'StreamingWebDatasetInterleaved', 'StreamCursor', 'CocoCaptionPairs',
    'JsonlImageText', 'WebDatasetImageText', 'MMC4Interleaved',
    'WebDatasetInterleaved', 'VideoTextPairs', 'KarpathyCaptionDataset',
    'VQADataset', 'HatefulMemesDataset', 'ImageFolderClassification',
    'IMAGENET_CLASS_NAMES_FILE', 'TextCorpusDataset'
]
