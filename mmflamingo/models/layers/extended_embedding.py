"""Token embeddings and output heads with a frozen base and trainable new rows.

Flamingo adds ``<image>``, ``<|endofchunk|>`` (and a pad token) to a frozen
LM. Only the rows of those new tokens are trained, so they live in their own
``new_weight`` parameter beside the frozen ``weight``: the optimizer and the
checkpoints see a few rows, not the whole vocabulary.
"""
import torch
import torch.nn.functional as F
from torch import nn


def _load_full_table(module: nn.Module, state_dict: dict, prefix: str,
                     name: str) -> None:
    """Split a legacy ``(num_base + num_new, ...)`` table into base and new.

    OpenFlamingo and ``resize_token_embeddings`` store one table holding the
    old and the new rows; ours stores them apart.
    """
    key, new_key = prefix + name, prefix + 'new_' + name
    table = state_dict.get(key)
    new = getattr(module, 'new_' + name)
    num_base = getattr(module, name).shape[0]
    if (table is not None and new_key not in state_dict
            and table.shape[0] == num_base + new.shape[0]):
        state_dict[key] = table[:num_base]
        state_dict[new_key] = table[num_base:]


def _new_rows(table: torch.Tensor, num_base: int, num_new: int,
              known: bool) -> torch.Tensor:
    """Where the new rows start: the LM's own rows for tokens it knows, else
    the mean of the old rows (a neutral embedding)."""
    if known:
        if table.shape[0] < num_base + num_new:
            raise ValueError(
                f'the tokenizer knew its {num_new} Flamingo tokens, but the '
                f'LM has {table.shape[0]} rows, fewer than their ids '
                f'{num_base}..{num_base + num_new - 1}')
        return table[num_base:num_base + num_new].float().clone()
    mean = table[:num_base].float().mean(0, keepdim=True)
    return mean.repeat(num_new, 1)


class ExtendedEmbedding(nn.Module):
    """An input embedding of ``num_base`` frozen rows and trainable new rows.

    Args:
        base (nn.Embedding): The LM's embedding. Its first ``num_base`` rows
            are kept (shared, not copied); rows beyond (vocabulary padding)
            are dropped, as ``resize_token_embeddings`` does.
        num_base (int): Vocabulary size before the new tokens were added.
        num_new (int): Number of new tokens, ids ``num_base ...``.
        known (bool): The LM was trained with the new tokens, so its rows
            ``num_base ...`` are where theirs start; otherwise they start at
            the mean of the old rows, a neutral embedding. Defaults to False.
    """

    def __init__(self,
                 base: nn.Embedding,
                 num_base: int,
                 num_new: int,
                 known: bool = False) -> None:
        super().__init__()
        if base.weight.shape[0] < num_base:
            raise ValueError(
                f'the LM has {base.weight.shape[0]} embedding rows, fewer '
                f'than the {num_base} tokens of its tokenizer')
        # Gemma 3's embedding scales the rows it looks up (embed_scale); an
        # embedding computing anything else would be silently replaced
        embed_scale = getattr(base, 'embed_scale', None)
        if type(base).forward is not nn.Embedding.forward and \
                embed_scale is None:
            raise TypeError(
                f'the LM\'s input embedding, {type(base).__name__}, computes '
                'more than a table lookup: ExtendedEmbedding cannot stand '
                'in for it')
        self.num_base = num_base
        self.weight = nn.Parameter(
            base.weight.data[:num_base], requires_grad=False)
        self.new_weight = nn.Parameter(
            _new_rows(base.weight.data, num_base, num_new, known))
        self.register_buffer(
            'embed_scale',
            None if embed_scale is None else embed_scale.detach().clone(),
            persistent=False)

    @property
    def num_embeddings(self) -> int:
        return self.num_base + self.new_weight.shape[0]

    @property
    def embedding_dim(self) -> int:
        return self.weight.shape[1]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        is_new = input_ids >= self.num_base
        base = F.embedding(input_ids.masked_fill(is_new, 0), self.weight)
        new = F.embedding((input_ids - self.num_base).clamp(min=0),
                          self.new_weight).to(base.dtype)
        embeddings = torch.where(is_new[..., None], new, base)
        if self.embed_scale is not None:
            embeddings = embeddings * self.embed_scale.to(embeddings.dtype)
        return embeddings

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _load_full_table(self, state_dict, prefix, 'weight')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class ExtendedLMHead(nn.Module):
    """An output projection that also scores the new tokens.

    Untied: its own frozen ``weight`` (and ``bias``) plus trainable
    ``new_weight`` (and ``new_bias``). Tied: it reuses the rows of the
    :class:`ExtendedEmbedding` and holds no parameter of its own.

    Args:
        base (nn.Linear): The LM's output projection.
        embedding (ExtendedEmbedding): The extended input embedding.
        tied (bool): Whether ``base`` shares its weight with the embedding.
        known (bool): As for :class:`ExtendedEmbedding`. Defaults to False.
    """

    def __init__(self,
                 base: nn.Linear,
                 embedding: ExtendedEmbedding,
                 tied: bool,
                 known: bool = False) -> None:
        super().__init__()
        self.tied = tied
        num_base, num_new = embedding.num_base, embedding.new_weight.shape[0]
        has_bias = getattr(base, 'bias', None) is not None
        if tied:
            # a tuple keeps the embedding out of this module's state dict
            self._embedding = (embedding, )
        else:
            self.weight = nn.Parameter(
                base.weight.data[:num_base], requires_grad=False)
            self.new_weight = nn.Parameter(
                _new_rows(base.weight.data, num_base, num_new, known))
        if has_bias:
            self.bias = nn.Parameter(
                base.bias.data[:num_base], requires_grad=False)
            new_bias = base.bias.data[num_base:num_base + num_new].float(
            ).clone() if known else torch.zeros(num_new)
            self.new_bias = nn.Parameter(new_bias)
        else:
            self.bias = self.new_bias = None

    def _tables(self):
        if self.tied:
            return self._embedding[0].weight, self._embedding[0].new_weight
        return self.weight, self.new_weight

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        weight, new_weight = self._tables()
        hidden_states = hidden_states.to(weight.dtype)
        base = F.linear(hidden_states, weight, self.bias)
        new_bias = None if self.new_bias is None else self.new_bias.to(
            base.dtype)
        new = F.linear(hidden_states, new_weight.to(base.dtype), new_bias)
        return torch.cat((base, new), dim=-1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if self.tied:
            # a tied checkpoint may repeat the embedding table here
            state_dict.pop(prefix + 'weight', None)
        else:
            _load_full_table(self, state_dict, prefix, 'weight')
        if self.bias is not None:
            _load_full_table(self, state_dict, prefix, 'bias')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
