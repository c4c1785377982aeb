"""models/distributed.py without a process group: the torchrun environment, the device of each process,
and how DistributedShuffle shares one seeded order out among the processes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.data import FaceDataset, PairedShuffle
from models.distributed import DistributedShuffle, World, process_device
from pipeline.errors import UsageError


def shares(order, n: int, size: int, batch_size: int, epoch: int = 1, drop_last: bool = False) -> list[list[int]]:
    """What each of `size` processes draws in one epoch."""
    out = []
    for rank in range(size):
        sampler = DistributedShuffle(order, n, World(rank=rank, size=size, local_rank=rank, local_size=size),
                                     batch_size, seed=7000, drop_last=drop_last)
        sampler.set_epoch(epoch)
        out.append(list(sampler))
        assert len(out[-1]) == len(sampler)
    return out


def shuffled(n: int):
    return lambda generator: torch.randperm(n, generator=generator).tolist()


def test_the_environment_of_torchrun_is_read_and_checked():
    assert World.from_env({}) == World() and not World().distributed and World().main
    world = World.from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert world == World(rank=3, size=4, local_rank=1, local_size=2) and world.distributed and not world.main
    assert World.from_env({"WORLD_SIZE": "1", "RANK": "0"}) == World()  # torchrun --nproc-per-node 1
    assert World.from_env({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}).local_size == 2
    with pytest.raises(UsageError, match="RANK='x' is not a whole number"):
        World.from_env({"WORLD_SIZE": "2", "RANK": "x"})
    with pytest.raises(UsageError, match="inconsistent torchrun environment"):
        World.from_env({"WORLD_SIZE": "2", "RANK": "2"})


def test_shards_of_scores_are_gathered_back_in_order():
    values = np.arange(11) * 10
    world = World(rank=0, size=3, local_size=3)
    parts = [values[World(rank=r, size=3, local_rank=r, local_size=3).shard(11)] for r in range(3)]
    assert sorted(np.concatenate(parts).tolist()) == values.tolist()
    assert world.shard(11) == slice(0, 11, 3)
    assert World().gather(values, 11) is values and World().concat(values) is values and World().broadcast(5) == 5


@pytest.mark.parametrize("n, size, batch_size", [(16, 2, 4), (17, 2, 4), (10, 3, 2), (5, 2, 8), (3, 4, 2)])
def test_every_process_draws_as_many_batches_from_one_order(n, size, batch_size):
    drawn = shares(shuffled(n), n, size, batch_size)
    assert len({len(share) for share in drawn}) == 1  # the same number of steps in every process (DDP needs it)
    order = shuffled(n)(torch.Generator().manual_seed(7001))  # seed + epoch
    per_process = len(drawn[0])
    padded = (order * size)[: size * per_process]
    steps = [sum((share[start : start + batch_size] for share in drawn), [])
             for start in range(0, per_process, batch_size)]
    assert sum(steps, []) == padded  # the processes' batches of a step: the next piece of the one order
    if n >= size:
        assert sorted(set(sum(drawn, []))) == list(range(n))  # nothing left out without drop_last


def test_drop_last_leaves_out_an_incomplete_last_step_only():
    drawn = shares(shuffled(21), 21, 2, 4, drop_last=True)
    assert [len(share) for share in drawn] == [8, 8] and len(set(sum(drawn, []))) == 16
    assert [len(share) for share in shares(shuffled(6), 6, 2, 4, drop_last=True)] == [3, 3]  # under one step: kept


def test_the_order_is_seeded_by_epoch_and_the_same_on_every_run():
    assert shares(shuffled(20), 20, 2, 4, epoch=3) == shares(shuffled(20), 20, 2, 4, epoch=3)
    assert shares(shuffled(20), 20, 2, 4, epoch=3) != shares(shuffled(20), 20, 2, 4, epoch=4)


@pytest.mark.parametrize("n_real, batch_size", [(8, 4), (10, 2), (7, 6)])
def test_a_real_and_its_self_blend_share_a_step(n_real, batch_size):
    """As in one process with a batch of (processes x batch size): with self-blends only and an even batch,
    a real and its blend are always in one step, and mostly in one process."""
    dataset = FaceDataset(torch.zeros((n_real, 3, 8, 8), dtype=torch.uint8), np.zeros(n_real, np.float32),
                          fakes="self-blend", landmarks=np.zeros((n_real, 5, 2), np.float32))
    pairs = dataset.pairs()
    for epoch in range(1, 6):
        drawn = shares(lambda generator: PairedShuffle(dataset, generator), len(dataset), 2, batch_size, epoch=epoch,
                       drop_last=len(dataset) > 2 * batch_size)
        for start in range(0, len(drawn[0]), batch_size):
            step = drawn[0][start : start + batch_size] + drawn[1][start : start + batch_size]
            assert all((real in step) == (blend in step) for real, blend in pairs)


def test_cuda_under_torchrun_needs_a_gpu_per_process(monkeypatch):
    two_of_two = World(rank=1, size=2, local_rank=1, local_size=2)
    assert process_device(two_of_two, "cpu") == torch.device("cpu")
    assert process_device(World(), "cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UsageError, match="needs one GPU per process: 2 processes on this machine, 1 GPU"):
        process_device(two_of_two, "cuda")
    with pytest.raises(UsageError, match=r"--device cuda \(the default when CUDA is available\)"):
        process_device(two_of_two, None)
    with pytest.raises(UsageError, match="pass --device cuda"):
        process_device(two_of_two, "cuda:0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert process_device(two_of_two, "cuda") == torch.device("cuda", 1)
    assert process_device(World(), "cuda:1") == torch.device("cuda", 1)  # one process: as asked
