"""How far ``generate``'s choices were from a tie, for tests that compare
generations computed in different shapes (cached or not, batched or alone,
two implementations).

Such computations round differently (by ~1e-5 in fp32, depending on the
CPU), so equal tokens are only guaranteed where no choice was closer than
that to its runner-up.
"""
from typing import Sequence

import torch

__all__ = ['generation_margin']


def generation_margin(scores: Sequence[torch.Tensor],
                      num_beams: int = 1) -> float:
    """The smallest gap between a choice of ``generate`` and the runner-up.

    Args:
        scores (Sequence[Tensor]): ``generate(..., output_scores=True,
            return_dict_in_generate=True).scores``: per step, ``(B * K, V)``
            processed scores of the K rows of each of B samples.
        num_beams (int): K. Greedy decoding (1) chooses each row's best
            token; beam search keeps the K best of each sample's ``K * V``
            accumulated scores, and the margin covers their order and the
            first one left out. Beams must not finish before the last step
            (``min_new_tokens`` equal to ``max_new_tokens``). Defaults to 1.

    Returns:
        float: The margin over all steps, rows and samples.
    """
    gaps = []
    if num_beams == 1:
        for step in scores:
            top = step.float().topk(2, dim=-1).values
            gaps.append((top[:, 0] - top[:, 1]).min())
        return float(torch.stack(gaps).min())
    batch = scores[0].shape[0] // num_beams
    # generate's start: only the first beam of each sample is live
    running = torch.full((batch, num_beams), -1e9, device=scores[0].device)
    running[:, 0] = 0
    for step in scores:
        # (B * K, V) -> (B, K * V): each sample's candidates
        candidates = step.float().view(batch, num_beams, -1)
        candidates = (candidates + running[..., None]).flatten(1)
        top = candidates.topk(num_beams + 1, dim=-1).values
        gaps.append((top[:, :-1] - top[:, 1:]).min())
        running = top[:, :num_beams]
    return float(torch.stack(gaps).min())
