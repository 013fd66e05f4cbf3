"""Dataset wrappers for training on a mixture of datasets."""
from typing import Union

from mmflamingo.registry import DATASETS


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
        data = self.dataset[idx]
        sample = data['data_samples']
        sample.set_field(
            self.loss_weight, 'loss_weight', field_type='metainfo')
        sample.set_field(self.name, 'dataset_name', field_type='metainfo')
        return data
