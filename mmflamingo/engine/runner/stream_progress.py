"""How far training got in a streaming dataset: what a checkpoint keeps so
that a resumed run continues where the stream stood."""
from typing import Dict, List, Optional

from mmflamingo.datasets import StreamCursor


class StreamProgress:
    """Where each dataloader worker's stream of one streaming dataset
    stands, as seen by the training loop in the main process.

    The loop reports every batch it takes (:meth:`update`); the cursor of
    the batch's last sample (see :class:`BaseStreamingDataset`) is then
    where the stream of the worker role that made the batch stands, and
    the next role's batch comes next (a dataloader takes its workers'
    batches in turn).

    Args:
        num_workers (int): The dataloader's workers (0: none).
    """

    def __init__(self, num_workers: int) -> None:
        self.num_roles = max(1, num_workers)
        self.cursors: Dict[int, StreamCursor] = {}
        self.next_role = 0

    def update(self, batch: dict) -> None:
        """Record a batch the loop has taken."""
        role, *cursor = batch['data_samples'][-1].stream_cursor
        self.cursors[role] = StreamCursor(*cursor)
        self.next_role = (role + 1) % self.num_roles

    def state_dict(self) -> dict:
        """Plain lists and ints, which ``weights_only`` loading accepts."""
        return dict(
            num_workers=self.num_roles,
            next_role=self.next_role,
            cursors=[[role, *cursor]
                     for role, cursor in sorted(self.cursors.items())])

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict` of the same number of
        workers."""
        self.next_role = state['next_role']
        self.cursors = {
            role: StreamCursor(*cursor)
            for role, *cursor in state['cursors']
        }

    def restart_after(self, states: List[Optional[dict]]) -> None:
        """Start every role at the epoch after the last one any of
        ``states`` reached: what a run resumed with other numbers of
        processes or workers does, whose streams cannot continue."""
        epochs = [
            cursor[1] for state in states if state
            for cursor in state['cursors']
        ]
        epoch = max(epochs, default=-1) + 1
        self.cursors = {
            role: StreamCursor(epoch)
            for role in range(self.num_roles)
        }
        self.next_role = 0
