"""Which tokens Flamingo learns to predict."""
import torch


def build_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 media_token: int, end_of_chunk_token: int) -> torch.Tensor:
    """Labels with OpenFlamingo's masking (``-100`` = no loss).

    No loss on padding, on ``<image>`` tokens, on tokens before a sample's
    first ``<image>``, nor on tokens after an ``<|endofchunk|>`` up to the
    next ``<image>`` (the ``<|endofchunk|>`` itself is learned: it is how
    the model learns to stop).

    Args:
        input_ids (Tensor): ``(B, S)``.
        attention_mask (Tensor): ``(B, S)``, 0 on padding.
        media_token (int): Id of ``<image>``.
        end_of_chunk_token (int): Id of ``<|endofchunk|>``.

    Returns:
        Tensor: ``(B, S)`` labels, aligned with ``input_ids`` (the shift is
        done by the loss).
    """
    positions = torch.arange(input_ids.shape[1], device=input_ids.device)
    never = torch.full_like(input_ids, -1)
    # position of the latest <image> at or before each token
    last_media = torch.where(input_ids == media_token, positions,
                             never).cummax(-1).values
    # position of the latest <|endofchunk|> strictly before each token
    is_eoc = torch.where(input_ids == end_of_chunk_token, positions, never)
    last_eoc = torch.cat((never[:, :1], is_eoc[:, :-1]), dim=1)
    last_eoc = last_eoc.cummax(-1).values
    learned = (last_media > last_eoc) & (input_ids != media_token)
    learned &= attention_mask.bool()
    return input_ids.masked_fill(~learned, -100)
