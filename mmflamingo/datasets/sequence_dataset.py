"""Datasets that write the model's training text, as OpenFlamingo does.

OpenFlamingo ends every sequence with the tokenizer's eos token and truncates
it to a per-dataset number of tokens (32 for image-text pairs, 256 for
interleaved documents) before the drop rules count its ``<image>`` tokens.
Both need the language model's tokenizer, so these datasets take the same
``tokenizer`` config as the model and hand the model the text that survives
truncation; the model tokenizes it again.
"""
import io
import os.path as osp
from typing import List, Optional, Tuple

from PIL import Image

from mmflamingo.tokens import MEDIA_TOKEN, add_flamingo_tokens, build_tokenizer
from .base_dataset import BaseFlamingoDataset, UnusableSample


def image_from_bytes(data: bytes, name: str) -> Image.Image:
    """Open encoded image bytes (decoded lazily, by ``LoadMedia``).

    Raises:
        ValueError: naming ``name`` when the bytes are not an image.
    """
    try:
        return Image.open(io.BytesIO(data))
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f'cannot read image {name}: {error}') from None


def check_file(path: str, field: str) -> None:
    """Raise a FileNotFoundError naming ``field`` unless ``path`` is a file.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'{field}: {path!r} does not exist')


def check_dir(path: str, field: str) -> None:
    """Raise a FileNotFoundError naming ``field`` unless ``path`` is a
    directory (an empty path means the working directory)."""
    if path and not osp.isdir(path):
        raise FileNotFoundError(f'{field}: {path!r} is not a directory')


class SequenceBuilder:
    """Writes the training text of one sample, as OpenFlamingo does.

    The part of a sequence dataset that does not depend on where the sample
    is stored: the tokenizer, truncation and the marker check. The indexed
    datasets and the streaming ones (:mod:`.streaming`) hold the same
    builders, so a sample gets the same text and drop rules whichever path
    reads it. Subclasses add a ``build`` method that returns the pipeline's
    input: ``media`` (images: paths, PIL images or arrays; videos: paths or
    encoded bytes), ``text`` (the whole training sequence, one ``<image>``
    marker per medium, in order), ``source`` (where the sample comes from,
    named in warnings) and ``sample_idx``.

    Args:
        tokenizer (dict): The model's tokenizer config: ``pretrained`` (a
            local directory) plus ``AutoTokenizer.from_pretrained`` kwargs.
            It must be a fast tokenizer (character offsets of tokens).
        max_tokens (int, optional): Truncate each sequence to this many
            tokens, special tokens (bos) included. None keeps it whole.
    """

    def __init__(self, tokenizer: dict, max_tokens: Optional[int]) -> None:
        self.tokenizer = build_tokenizer(
            **tokenizer, field='dataset.tokenizer')
        if not self.tokenizer.is_fast:
            raise TypeError('dataset.tokenizer must be a fast tokenizer: '
                            'truncation keeps the text up to the last kept '
                            "token's character offset")
        self.tokens = add_flamingo_tokens(self.tokenizer)
        self.eos_token: str = self.tokenizer.eos_token
        self.max_tokens = max_tokens

    def truncate(self, text: str) -> Tuple[str, List[int]]:
        """Truncate ``text`` to ``max_tokens`` tokens, as the tokenizer does.

        Returns:
            tuple[str, list[int]]: The prefix of ``text`` that the kept
            tokens cover (the whole text when nothing is cut) and their ids.
        """
        encoded = self.tokenizer(
            text,
            truncation=self.max_tokens is not None,
            max_length=self.max_tokens,
            return_offsets_mapping=True)
        if not encoded.encodings[0].overflowing:
            return text, encoded['input_ids']
        end = max(stop for _, stop in encoded['offset_mapping'])
        return text[:end], encoded['input_ids']

    @staticmethod
    def check_markers(results: dict) -> dict:
        """Return ``results``, or raise :class:`UnusableSample` when its
        text has more ``<image>`` markers than media."""
        markers = results['text'].count(MEDIA_TOKEN)
        if markers > len(results['media']):
            raise UnusableSample(
                f'{markers} {MEDIA_TOKEN} markers but '
                f'{len(results["media"])} images in {results["source"]}')
        return results


class BaseSequenceDataset(BaseFlamingoDataset):
    """Base of the indexed datasets that build ``<image>``-interleaved
    training text.

    Subclasses implement :meth:`load_sample`, which turns one entry of the
    data list into the pipeline's input with their :class:`SequenceBuilder`
    (``self.builder``). A sample whose text has more ``<image>`` markers
    than media raises :class:`UnusableSample`.

    Args:
        builder (SequenceBuilder): Writes each sample's text.
        **kwargs: :class:`mmengine.dataset.BaseDataset` arguments.
    """

    def __init__(self, builder: SequenceBuilder, **kwargs) -> None:
        self.builder = builder
        self.tokenizer = builder.tokenizer
        self.tokens = builder.tokens
        super().__init__(**kwargs)

    def load_sample(self, info: dict) -> dict:
        """Read one data list entry into the pipeline's input."""
        raise NotImplementedError

    def prepare_data(self, idx: int) -> dict:
        results = self.load_sample(self.get_data_info(idx))
        return self.pipeline(self.builder.check_markers(results))
