import pytest

from pipeline.errors import UsageError
from pipeline.sampling import SamplingConfig, sample_indices


@pytest.mark.parametrize(
    "count, every, expected",
    [(0, 10, []), (1, 10, [0]), (10, 10, [0]), (11, 10, [0, 10]), (25, 10, [0, 10, 20]), (5, 1, [0, 1, 2, 3, 4])],
)
def test_every_nth_frame(count, every, expected):
    assert sample_indices(count, SamplingConfig(every=every)) == expected


def test_k_frames_are_evenly_spread_and_include_both_ends():
    indices = sample_indices(300, SamplingConfig(every=None, frames=7))
    assert indices == [0, 50, 100, 150, 199, 249, 299]


def test_k_frames_on_a_short_video_keeps_every_frame():
    assert sample_indices(4, SamplingConfig(every=None, frames=10)) == [0, 1, 2, 3]


def test_one_frame_is_the_middle_one():
    assert sample_indices(101, SamplingConfig(every=None, frames=1)) == [50]


@pytest.mark.parametrize("every, frames", [(None, None), (10, 5), (0, None), (None, 0)])
def test_invalid_sampling_is_a_usage_error(every, frames):
    with pytest.raises(UsageError):
        SamplingConfig(every=every, frames=frames)


def test_prefetch_yields_everything_in_order_and_reraises():
    from pipeline.media import prefetch

    assert list(prefetch(range(100), depth=3)) == list(range(100))

    def failing():
        yield 1
        raise ValueError("broken")

    got = []
    with pytest.raises(ValueError, match="broken"):
        for item in prefetch(failing()):
            got.append(item)
    assert got == [1]


def test_prefetch_stops_its_thread_when_the_consumer_stops():
    import threading

    from pipeline.media import prefetch

    before = threading.active_count()
    for item in prefetch(iter(range(10**9)), depth=2):
        if item == 5:
            break
    assert threading.active_count() == before
