"""Helpers shared by the pretrainers."""

__all__ = ['tokenizer_ids']


def tokenizer_ids(tokenizer, config: dict, field: str) -> dict:
    """``config`` with the tokenizer's vocabulary size and special token ids.

    ``vocab_size`` defaults to the tokenizer's size (a larger one is kept);
    ``bos_token_id``, ``eos_token_id`` and ``pad_token_id`` are the
    tokenizer's (pad falls back to eos).

    Args:
        tokenizer: A ``transformers`` tokenizer.
        config (dict): Keyword arguments of a ``transformers`` config.
        field (str): Config field named in errors.
    """
    config = dict(config)
    config.setdefault('vocab_size', len(tokenizer))
    if config['vocab_size'] < len(tokenizer):
        raise ValueError(f'{field}.vocab_size={config["vocab_size"]} is '
                         f'smaller than the tokenizer ({len(tokenizer)})')
    pad = tokenizer.pad_token_id
    config.update(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id if pad is None else pad)
    return config
