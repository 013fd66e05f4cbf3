"""The feed-forward block shared by the Perceiver Resampler and GATED XATTN."""
import torch
import torch.nn.functional as F
from torch import nn


class SquaredReLU(nn.Module):
    """``relu(x) ** 2``, the activation of the Flamingo paper (So et al.)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


ACTIVATIONS = {'gelu': nn.GELU, 'squared_relu': SquaredReLU}


class FeedForward(nn.Module):
    """Pre-norm MLP: ``LayerNorm -> Linear -> act -> Linear``, no biases.

    Args:
        dim (int): Input and output feature size.
        mult (int): Hidden size as a multiple of ``dim``. Defaults to 4.
        act (str): ``'gelu'`` (OpenFlamingo) or ``'squared_relu'`` (the
            paper). Defaults to ``'gelu'``.
    """

    def __init__(self, dim: int, mult: int = 4, act: str = 'gelu') -> None:
        super().__init__()
        if act not in ACTIVATIONS:
            raise ValueError(f'act must be one of {sorted(ACTIVATIONS)}, '
                             f'got {act!r}')
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim * mult, bias=False)
        self.act = ACTIVATIONS[act]()
        self.fc2 = nn.Linear(dim * mult, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))
