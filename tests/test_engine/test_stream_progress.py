"""StreamProgress: what the training loop records of a stream's batches and
where a resumed stream starts."""
from mmpretrain.structures import DataSample

from mmflamingo.datasets import StreamCursor
from mmflamingo.engine.runner import StreamProgress


def batch(*cursors) -> dict:
    samples = []
    for cursor in cursors:
        sample = DataSample()
        sample.set_field(cursor, 'stream_cursor', field_type='metainfo')
        samples.append(sample)
    return dict(inputs=[], data_samples=samples)


def test_the_last_sample_of_each_batch_is_where_its_worker_stands():
    progress = StreamProgress(num_workers=2)
    progress.update(batch((0, 0, 0, 1), (0, 0, 0, 2)))
    assert progress.next_role == 1
    progress.update(batch((1, 0, 0, 1), (1, 0, 1, 1)))
    progress.update(batch((0, 0, 1, 1), (0, 0, 1, 2)))
    assert progress.cursors == {
        0: StreamCursor(0, 1, 2),
        1: StreamCursor(0, 1, 1)
    }
    assert progress.next_role == 1
    state = progress.state_dict()
    # plain lists and ints: a weights_only checkpoint loads them
    assert state == dict(
        num_workers=2, next_role=1, cursors=[[0, 0, 1, 2], [1, 0, 1, 1]])
    again = StreamProgress(num_workers=2)
    again.load_state_dict(state)
    assert (again.cursors, again.next_role) == (progress.cursors, 1)


def test_other_numbers_of_workers_restart_at_the_next_epoch():
    progress = StreamProgress(num_workers=3)
    progress.restart_after([
        dict(num_workers=2, next_role=0, cursors=[[0, 4, 1, 2], [1, 5, 0, 1]]),
        None,  # a rank that had not taken a batch yet
    ])
    assert progress.cursors == {role: StreamCursor(6) for role in range(3)}
    assert progress.next_role == 0
