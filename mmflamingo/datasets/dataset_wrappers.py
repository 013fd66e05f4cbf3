"""Dataset wrappers for training on a mixture of datasets."""
from typing import Iterator, Optional, Union

from torch.utils.data import IterableDataset

from mmflamingo.registry import DATASETS


def _tag(data: dict, loss_weight: float, name: str) -> dict:
    sample = data['data_samples']
    sample.set_field(loss_weight, 'loss_weight', field_type='metainfo')
    sample.set_field(name, 'dataset_name', field_type='metainfo')
    return data


@DATASETS.register_module()
class LossWeightedDataset:
    """Tag every sample of a dataset with its loss weight and name.

    Args:
        dataset (dict | Dataset): The dataset or its config.
        loss_weight (float): Weight of its samples' loss. Defaults to 1.
        name (str): Dataset name, recorded as ``dataset_name``.
            Defaults to ``'data'``.
    """

    def __init__(self,
                 dataset: Union[dict, object],
                 loss_weight: float = 1.0,
                 name: str = 'data') -> None:
        self.dataset = DATASETS.build(dataset) if isinstance(dataset,
                                                             dict) else dataset
        self.loss_weight = float(loss_weight)
        self.name = name

    @property
    def metainfo(self) -> dict:
        return getattr(self.dataset, 'metainfo', {})

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> dict:
        return _tag(self.dataset[idx], self.loss_weight, self.name)


class LossWeightedStream(IterableDataset):
    """:class:`LossWeightedDataset` for a streaming (iterable) dataset.

    A stream has no length of its own, but mmengine asks the training
    dataloader for one (the schedules' ``epoch_length``, the logger,
    DeepSpeed's settings). An iteration-based run is one epoch to mmengine,
    so the training loop gives the stream the samples the run may take
    from it as ``num_samples``.

    Args:
        dataset (IterableDataset): The streaming dataset.
        loss_weight (float): Weight of its samples' loss. Defaults to 1.
        name (str): Dataset name, recorded as ``dataset_name``.
            Defaults to ``'data'``.
        num_samples (int, optional): The length reported. Defaults to None
            (``len()`` raises ``TypeError``).
    """

    def __init__(self,
                 dataset: IterableDataset,
                 loss_weight: float = 1.0,
                 name: str = 'data',
                 num_samples: Optional[int] = None) -> None:
        self.dataset = dataset
        self.loss_weight = float(loss_weight)
        self.name = name
        self.num_samples = num_samples

    def __len__(self) -> int:
        if self.num_samples is None:
            raise TypeError(f'the stream {self.name!r} has no length')
        return self.num_samples

    @property
    def metainfo(self) -> dict:
        return getattr(self.dataset, 'metainfo', {})

    def __iter__(self) -> Iterator[dict]:
        for data in self.dataset:
            yield _tag(data, self.loss_weight, self.name)


def loss_weighted(
        dataset: Union[dict, object],
        loss_weight: float = 1.0,
        name: str = 'data') -> Union[LossWeightedDataset, LossWeightedStream]:
    """Build ``dataset`` (a config or a dataset) and tag its samples with
    ``loss_weight`` and ``name``: a :class:`LossWeightedStream` for a
    streaming dataset, else a :class:`LossWeightedDataset`."""
    if isinstance(dataset, dict):
        dataset = DATASETS.build(dataset)
    if isinstance(dataset, IterableDataset):
        return LossWeightedStream(dataset, loss_weight, name)
    return LossWeightedDataset(dataset, loss_weight, name)
