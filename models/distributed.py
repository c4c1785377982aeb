"""Training on several processes started by torchrun: DistributedDataParallel, gloo on CPU, NCCL on CUDA.

`torchrun --nproc-per-node N cli.py train ...` starts N copies of the command and tells each where it
stands through the environment (WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT).
`World.from_env()` reads it; with WORLD_SIZE unset or 1 the run is a single process and nothing here
starts a process group, so a plain `cli.py train` behaves as it always did.

What the training loop needs from the processes, in the spirit of torchvision's reference utils
(`init_distributed_mode`, `is_main_process`, `save_on_master`):
  - `process_device` and `process_group`: one device per process (cuda:LOCAL_RANK, or the CPU) and the
    process group, destroyed on every way out;
  - `DistributedShuffle`: each process's share of one seeded order of the whole training set;
  - `World.gather`, `World.concat`, `World.broadcast`, `World.barrier`, `sync_buffers`: predictions of
    all processes for the metrics, one process's decisions for all, and waiting for rank 0's files.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Sampler

from pipeline.detectors import resolve_device
from pipeline.errors import UsageError

log = logging.getLogger(__name__)

ENV_NAMES = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@dataclass(frozen=True)
class World:
    """Where this process stands among the processes of one training run (one process: the defaults)."""

    rank: int = 0  # 0 .. size - 1 over all machines; rank 0 writes the run's files
    size: int = 1
    local_rank: int = 0  # 0 .. local_size - 1 on this machine; picks the GPU
    local_size: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> "World":
        """The world torchrun describes in the environment; one process when WORLD_SIZE is unset."""
        if "WORLD_SIZE" not in environ:
            return cls()
        values = {}
        for name in ENV_NAMES:
            text = environ.get(name, "0" if name in ("RANK", "LOCAL_RANK") else environ["WORLD_SIZE"])
            try:
                values[name] = int(text)
            except ValueError:
                raise UsageError(f"environment variable {name}={text!r} is not a whole number "
                                 "(set by torchrun; unset WORLD_SIZE to train in one process)") from None
        world = cls(rank=values["RANK"], size=values["WORLD_SIZE"], local_rank=values["LOCAL_RANK"],
                    local_size=values["LOCAL_WORLD_SIZE"])
        if not (0 <= world.rank < world.size and 0 <= world.local_rank < world.local_size <= world.size):
            raise UsageError(f"inconsistent torchrun environment: "
                             + ", ".join(f"{name}={values[name]}" for name in ENV_NAMES))
        return world

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files, shows progress and reports."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This process's share of n items to score: every size-th, from its rank (`gather` undoes it)."""
        return slice(self.rank, n, self.size)

    def gather(self, part: np.ndarray, n: int) -> np.ndarray:
        """The n values of which each process computed its `shard(n)`, in their original order, on every process."""
        if not self.distributed:
            return part
        parts = self._all_gather(np.asarray(part))
        whole = np.empty((n, *parts[0].shape[1:]), dtype=parts[0].dtype)
        for rank, values in enumerate(parts):
            whole[rank::self.size] = values
        return whole

    def concat(self, part: np.ndarray) -> np.ndarray:
        """Every process's `part`, joined in rank order, on every process."""
        return np.concatenate(self._all_gather(np.asarray(part))) if self.distributed else part

    def broadcast(self, value):
        """Rank 0's `value` (any picklable object), on every process: one decision for all."""
        if not self.distributed:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait until every process gets here (e.g. before reading a file rank 0 has just written)."""
        if self.distributed:
            torch.distributed.barrier()

    def _all_gather(self, value) -> list:
        parts = [None] * self.size
        torch.distributed.all_gather_object(parts, value)
        return parts


def process_device(world: World, name: str | None) -> torch.device:
    """The device this process trains on: `--device` as in one process, except that under torchrun CUDA
    means cuda:LOCAL_RANK, one GPU per process of the machine (UsageError when there are too few)."""
    device = resolve_device(name)
    if not world.distributed:
        return device
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise UsageError(f"--device {name}: training under torchrun runs on cpu (gloo) or cuda (NCCL)")
    asked = f"--device {name}" if name else "--device cuda (the default when CUDA is available)"
    if device.index is not None and world.local_size > 1:
        raise UsageError(f"{asked}: under torchrun each process takes the GPU of its LOCAL_RANK; pass --device cuda")
    gpus = torch.cuda.device_count()
    if gpus < world.local_size:
        raise UsageError(f"{asked} under torchrun needs one GPU per process: {world.local_size} processes on this "
                         f"machine, {gpus} GPU(s) visible; start at most --nproc-per-node {gpus}, or pass "
                         "--device cpu")
    return torch.device("cuda", world.local_rank if device.index is None else device.index)


@contextmanager
def process_group(world: World, device: torch.device) -> Iterator[None]:
    """The default process group of `world` (gloo on the CPU, NCCL on CUDA) for the duration of the block,
    destroyed however the block ends; nothing at all for one process."""
    if not world.distributed:
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        torch.distributed.init_process_group(backend, rank=world.rank, world_size=world.size,
                                             device_id=device if device.type == "cuda" else None)
    except (ValueError, RuntimeError) as exc:  # no MASTER_ADDR/PORT, rendezvous refused or timed out
        raise UsageError(f"cannot join the {backend} process group as rank {world.rank} of {world.size} "
                         f"(start training on several processes with torchrun): {exc}") from None
    log.debug("rank %d of %d joined the %s process group on %s", world.rank, world.size, backend, device)
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


@torch.no_grad()
def sync_buffers(world: World, model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) in every process's model. DistributedDataParallel
    sends them before each training step, so after the last step each process holds its own update;
    this makes every process score with the weights the checkpoint (rank 0's) holds."""
    if world.distributed:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, src=0)


class DistributedShuffle(Sampler[int]):
    """This process's share of one seeded order of the whole training set, shared out by global batch.

    Every process draws the same global order from `order(generator)` with the generator seeded by
    seed + epoch (`set_epoch`, as torch's DistributedSampler), e.g. a `PairedShuffle`, so a real comes
    right before its own self-blend. Global batch j is the next size x batch_size samples of that order,
    and process r takes its r-th contiguous part as its batch j: the processes' batches of one step
    together are a contiguous piece of the order, as one process's batch of size x batch_size would be,
    so a real and its blend share a step as they would share that batch (always with self-blends only
    and an even batch size), and mostly a process. With `drop_last` an incomplete last global batch is
    left out (as a DataLoader's drop_last); without it the order is padded by starting over so that every
    process gets ceil(n / size) samples. Every process has the same number of batches, which DDP needs.
    """

    def __init__(self, order: Callable[[torch.Generator], Iterable[int]], n: int, world: World, batch_size: int,
                 seed: int = 0, drop_last: bool = False):
        if n < 1 or batch_size < 1:
            raise ValueError(f"DistributedShuffle needs samples and a batch size, got n={n}, batch_size={batch_size}")
        self.order, self.n, self.world, self.batch_size = order, n, world, batch_size
        self.seed, self.epoch = seed, 0
        global_batch = world.size * batch_size
        if drop_last and n > global_batch:
            self.per_process = (n // global_batch) * batch_size
        else:
            self.per_process = math.ceil(n / world.size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_process

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        order = [int(index) for index in self.order(generator)]
        total = self.world.size * self.per_process
        order = (order * math.ceil(total / len(order)))[:total]  # padded by starting over, or cut
        for start in range(0, self.per_process, self.batch_size):
            size = min(self.batch_size, self.per_process - start)
            first = self.world.size * start + self.world.rank * size
            yield from order[first : first + size]
