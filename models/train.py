"""The train stage: a flat loop in the style of torchvision's reference train.py.

fit(): manifest -> split by group -> crops decoded once into memory -> AdamW with a warm-up + cosine
schedule -> per epoch `train_one_epoch` and `evaluate` on validation -> best (by validation frame
ROC-AUC) and last checkpoints, metrics.json, curves.png -> early stopping -> the best checkpoint
scored once on the test split (metrics.json "test", roc_test.png).

The FAKE training samples come from the cache's labels (`fakes="dataset"`), from self-blended images of
its REAL faces (`"self-blend"`, models/selfblend.py), or from both. Validation and test are always scored
on the cache's own REAL and FAKE faces; with self-blends, each epoch also scores the validation REAL
faces against their self-blends ("val_self_blend" in metrics.json) and against lower-face blends of them
("val_lower_face_blend", the boundary lip-sync tools leave). Self-blends are blended through the five
landmarks' face outline, or (`blend_outlines`) through dense face outlines where a file has one, and
(`lower_face_blends`) that share of them through the lower face only.

Under `torchrun --nproc-per-node N` (models/distributed.py) the same loop runs in N processes with
DistributedDataParallel: each trains on its share of one seeded order of the training set (a batch of
--batch-size per process), each scores its share of validation and test and the metrics are computed over
all of their predictions, rank 0's decisions (best epoch, early stopping) hold for all, and only rank 0
writes the run's files and reports. Without torchrun (or with one process) nothing of that happens.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, RandomSampler, Sampler, WeightedRandomSampler
from tqdm import tqdm

from models.checkpoint import Checkpoint, load_checkpoint, make_checkpoint, save_checkpoint
from models.data import (CLASSES, FAKE_SOURCES, FaceDataset, PairedShuffle, Preprocess, build_augment, net_preprocess,
                         has_outline, labelled_faces, labels_of, landmarks_of, load_crops, outlines_of,
                         parse_augment, picture_boxes_of)
from models.distributed import DistributedShuffle, World, process_device, process_group, sync_buffers
from models.metrics import binary_metrics, describe, frame_and_video_metrics
from models.nets import fake_logits
from models.plots import plot_curves, plot_roc
from models.registry import create_model, model_names
from models.split import SPLITS, assign_splits, check_fractions, read_split, split_groups, subsample_groups, write_split
from pipeline.cache import load_manifest, write_atomic
from pipeline.errors import DataError, UsageError

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 20
RUN_FILES = ("config.json", "split.csv", "metrics.json", "checkpoint_best.pt", "checkpoint_last.pt", "curves.png",
             "roc_test.png")
BALANCE_MODES = ("loss", "sampler", "none")
PRECISIONS = ("auto", "fp32", "bf16")  # auto: float16 mixed precision on CUDA, float32 on the CPU


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. On --resume the run's saved config wins, except epochs and runtime."""

    net: str | None = None  # required unless resume
    faces: Path = Path("data/faces")
    run_dir: Path | None = None  # None: runs/<net>-<time>
    epochs: int | None = None  # None: DEFAULT_EPOCHS, or the saved value on resume
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    patience: int = 4  # epochs without a better validation AUC before stopping
    augment: str = "all"
    balance: str = "loss"  # loss: positive-class weight in the loss; sampler: weighted sampling; none
    fakes: str = "dataset"  # dataset: the cache's FAKE faces; self-blend: self-blends of its REAL faces; both
    blend_outlines: Path | None = None  # dense face outlines (npz) to blend through; None: the 5-point hull
    lower_face_blends: float = 0.0  # the share of self-blends blended through the lower face only (lip-sync)
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_file: Path | None = None
    seed: int = 0
    net_kwargs: dict = field(default_factory=dict)
    limit: int | None = None  # about this many faces, whole groups (quick trials)
    threads: int | None = None  # torch threads; None: all cores
    workers: int = 0  # DataLoader worker processes
    device: str | None = None  # None: cuda when available
    precision: str | None = None  # training arithmetic (PRECISIONS); None: auto, or the saved one on resume
    resume: bool = False
    init_from: Path | None = None  # start from this checkpoint's weights (fine-tuning) instead of random ones

    def __post_init__(self):
        for name in ("batch_size", "patience"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.epochs is not None and self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1, got {self.epochs}")
        if not self.lr > 0 or self.weight_decay < 0 or self.warmup_epochs < 0:
            raise UsageError("--lr must be positive, --weight-decay and warm-up not negative")
        if self.balance not in BALANCE_MODES:
            raise UsageError(f"--balance {self.balance!r}: choose one of {', '.join(BALANCE_MODES)}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.fakes not in FAKE_SOURCES:
            raise UsageError(f"--fakes {self.fakes!r}: choose one of {', '.join(FAKE_SOURCES)}")
        if self.fakes != "dataset" and self.balance == "sampler":
            raise UsageError(f"--balance sampler draws faces one by one and would part a real from its own "
                             f"self-blend; with --fakes {self.fakes} use --balance loss or none")
        if self.blend_outlines is not None and self.fakes == "dataset":
            raise UsageError("--blend-outlines shapes self-blends: use it with --fakes self-blend or both")
        if not 0.0 <= self.lower_face_blends <= 1.0:
            raise UsageError(f"--lower-face-blends is a share of the self-blends, 0 to 1; got {self.lower_face_blends}")
        if self.lower_face_blends > 0 and self.fakes == "dataset":
            raise UsageError("--lower-face-blends shapes self-blends: use it with --fakes self-blend or both")
        if self.limit is not None and self.limit < 3:
            raise UsageError(f"--limit must be at least 3 faces, got {self.limit}")
        check_fractions(tuple(self.fractions))
        parse_augment(self.augment)
        if self.net is None and not self.resume and self.init_from is None:
            raise UsageError(f"--net is required; choose one of: {', '.join(model_names())}")

    def to_dict(self) -> dict:
        """JSON- and checkpoint-safe (paths as strings, tuples as lists)."""
        fields = asdict(self)
        for key, value in fields.items():
            if isinstance(value, Path):
                fields[key] = str(value)
            elif isinstance(value, tuple):
                fields[key] = list(value)
        return fields

    @classmethod
    def from_dict(cls, saved: dict) -> "TrainConfig":
        """The config saved in a run (extra keys such as cache_dir are ignored)."""
        fields = {key: saved[key] for key in cls.__dataclass_fields__ if key in saved}
        for key in ("faces", "run_dir", "split_file", "init_from", "blend_outlines"):
            if fields.get(key) is not None:
                fields[key] = Path(fields[key])
        fields["fractions"] = tuple(fields["fractions"])
        return cls(**fields)


@dataclass
class TrainResult:
    run_dir: Path
    net: str
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    seconds: float
    split_sizes: dict
    best: dict  # the history entry of the best epoch
    test: dict  # {"frame": metrics, "video": metrics}
    notes: list[str] = field(default_factory=list)
    main_process: bool = True  # False in the processes of a torchrun run other than rank 0: they print nothing

    def lines(self) -> list[str]:
        """The run's summary; none in a process other than rank 0 under torchrun (rank 0 reports for all)."""
        if not self.main_process:
            return []
        stop = "stopped early (patience)" if self.stopped_early else "all epochs run"
        train = self.best["train"]
        out = [f"run {self.run_dir}: {self.net}, {self.epochs_run} epoch(s), {stop}, best epoch {self.best_epoch}, "
               f"{self.seconds:.0f} s"]
        out += [f"  note: {note}" for note in self.notes]
        out.append(f"train {_sizes(self.split_sizes['train'])} | best epoch, augmented batches: "
                   f"loss {train['log_loss']:.3f}  acc {train['accuracy']:.3f}  "
                   f"AUC {'n/a' if train['roc_auc'] is None else format(train['roc_auc'], '.3f')}")
        for name, metrics in (("val", self.best["val"]), ("test", self.test)):
            out.append(f"{name:5} {_sizes(self.split_sizes[name])}")
            out.append(f"      frame level: {describe(metrics['frame'])}")
            out.append(f"      video level: {describe(metrics['video'])}")
            if name == "val" and "val_self_blend" in self.best:
                out.append(f"      its REAL faces vs their self-blends: {describe(self.best['val_self_blend'])}")
            if name == "val" and "val_lower_face_blend" in self.best:
                out.append(f"      its REAL faces vs lower-face blends: {describe(self.best['val_lower_face_blend'])}")
        out.append(f"files: {self.run_dir}/checkpoint_best.pt, metrics.json, curves.png, roc_test.png, split.csv")
        return out


def _sizes(sizes: dict) -> str:
    return f"({sizes['faces']} faces, {sizes['videos']} videos, {sizes['groups']} groups)"


# -- the loop ----------------------------------------------------------------------------------------
def train_one_epoch(model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, loader: DataLoader, preprocess: Preprocess,
                    device: torch.device, scaler: torch.amp.GradScaler, epoch: int, progress: bool = True,
                    world: World = World(), autocast_dtype: torch.dtype | None = None) -> dict:
    """One pass over `loader`; metrics of the batches' own predictions (as the weights changed), those of
    every process under torchrun. `autocast_dtype`: mixed precision in that type (`training_autocast`)."""
    model.train()
    labels, probabilities = [], []
    bar = tqdm(loader, desc=f"epoch {epoch}", unit="batch", disable=not progress, leave=False, dynamic_ncols=True)
    for images, targets in bar:
        images = to_model_input(preprocess.normalize(images.to(device, non_blocking=True)))
        targets = targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = model(images)
            loss = criterion(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        labels.append(targets.cpu())
        probabilities.append(torch.sigmoid(logits.detach().float()).cpu())
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    return binary_metrics(world.concat(torch.cat(labels).numpy()), world.concat(torch.cat(probabilities).numpy()),
                          name="train batches")


@torch.inference_mode()
def evaluate(model: nn.Module, images: torch.Tensor, preprocess: Preprocess, device: torch.device,
             batch_size: int = 256, tta: str = "none") -> np.ndarray:
    """p_fake of every image (uint8 (N, 3, S, S) from `load_crops`), no augmentation but `tta` (`fake_logits`)."""
    model.eval()
    scores = []
    for start in range(0, len(images), batch_size):
        batch = to_model_input(preprocess.normalize(images[start : start + batch_size].to(device)))
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            scores.append(torch.sigmoid(fake_logits(model, batch, tta)).cpu())
    return torch.cat(scores).numpy() if scores else np.zeros(0, dtype=np.float32)


def fit(config: TrainConfig, progress: bool = True, report: Callable[[str], None] | None = None) -> TrainResult:
    """Train, validate each epoch, stop early, and test the best checkpoint once. Writes only to the run dir.

    Under torchrun this is one process of a DistributedDataParallel run: it joins the process group (gloo
    on the CPU, NCCL on cuda:LOCAL_RANK) and leaves it however training ends; only rank 0 shows progress,
    reports and writes."""
    world = World.from_env()
    device = process_device(world, config.device)  # a usage error before any process waits on another
    with process_group(world, device):
        return train_processes(config, world, device, progress=progress and world.main,
                               report=(report or log.info) if world.main else ignore)


def train_processes(config: TrainConfig, world: World, device: torch.device, progress: bool,
                    report: Callable[[str], None]) -> TrainResult:
    """`fit` in one process of `world` (a single process: World())."""
    started = time.perf_counter()
    threads = config.threads or max(1, (os.cpu_count() or 1) // world.local_size)
    torch.set_num_threads(threads)
    config, resumed = prepare_run_dir(config)

    # Everything that can fail on bad input happens before the first file is written.
    rows, table, cache_dir, n_unknown = split_faces(config, resumed)
    start = None if resumed or config.init_from is None else starting_checkpoint(config, rows)
    if start is not None:
        config = replace(config, net=start.net, net_kwargs=start.net_kwargs)
    config = replace(config, run_dir=world.broadcast(config.run_dir))  # rank 0's (a default name holds the time)
    seed_everything(config.seed)  # the initial weights
    model = create_model(config.net, **config.net_kwargs).to(device, memory_format=torch.channels_last)
    preprocess = net_preprocess(model.name, model.input_size)
    if start is not None:
        model.load_state_dict(start.state["model"])
    elif not resumed:
        model.start_weights()
    parts = {name: np.flatnonzero(rows["split"].to_numpy() == name) for name in SPLITS}
    landmarks = pictures = outlines = None
    if config.fakes != "dataset":  # the REAL faces of train and val are self-blended
        blended = rows.index[(rows["label"] == CLASSES[0]) & rows["split"].isin(["train", "val"])]
        landmarks = np.full((len(rows), 5, 2), np.nan, dtype=np.float32)
        landmarks[blended] = landmarks_of(rows.loc[blended], cache_dir, preprocess)
        pictures = picture_boxes_of(rows, cache_dir, preprocess)  # blends stay off the crops' padding
    if config.blend_outlines is not None:
        outlines = blend_outlines_of(rows, blended, cache_dir, preprocess, config.blend_outlines)
    images = load_crops(rows["crop_file"].tolist(), preprocess, threads=threads, progress=progress)

    notes = [f"{n_unknown} face(s) with an unknown label left out"] if n_unknown else []
    if start is not None:
        notes.append(f"started from the weights of {config.init_from} (epoch {start.epoch})")
    if world.distributed:
        notes.append(f"{world.size} processes (torchrun, {'NCCL' if device.type == 'cuda' else 'gloo'}), "
                     f"{config.batch_size} faces each a step")
    sizes = {name: {"faces": len(index), "videos": rows["video_id"].iloc[index].nunique(),
                    "groups": rows["group"].iloc[index].nunique()} for name, index in parts.items()}
    split_groups_used = {name: sorted(rows["group"].iloc[index].unique().tolist()) for name, index in parts.items()}
    run_config = {**config.to_dict(), "net_kwargs": model.net_kwargs, "cache_dir": str(cache_dir)}
    world.barrier()  # every process has checked the run dir before rank 0 writes in it
    if not resumed and world.main:
        config.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(config.run_dir / "config.json", json.dumps(run_config, indent=2).encode())
        write_split(table, config.run_dir / "split.csv")
    if world.distributed:
        world.barrier()  # rank 0 has written config.json
        if not (config.run_dir / "config.json").is_file():  # found now, not at the end when the test reads it
            raise UsageError(f"{config.run_dir}: rank {world.rank} does not see the run rank 0 writes there; on "
                             "several machines --out must be on a filesystem they all share")

    generator = torch.Generator()  # reseeded every epoch: shuffling and sampling (under torchrun: worker seeds)
    loader = make_loader(images[parts["train"]], labels_of(rows.iloc[parts["train"]]), config, generator, device,
                         landmarks=None if landmarks is None else landmarks[parts["train"]],
                         pictures=None if pictures is None else pictures[parts["train"]], world=world,
                         outlines=None if outlines is None else outlines[parts["train"]])
    y_train = loader.dataset.labels.numpy()
    notes += fake_source_notes(loader.dataset, config.blend_outlines)
    pos_weight = float((y_train == 0).sum() / max(1, (y_train == 1).sum())) if config.balance == "loss" else 1.0
    criterion = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, device=device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=len(loader))
    autocast_dtype = training_autocast(config.precision, device)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype == torch.float16)  # bfloat16 needs no scaling
    if autocast_dtype is not None:
        notes.append(f"mixed precision: {str(autocast_dtype).removeprefix('torch.')} on {device.type} "
                     f"(--precision {config.precision})")

    history, best_score, best_epoch, bad_epochs, stopped = [], None, 0, 0, False
    if resumed:  # every process loads the same state
        last = load_checkpoint(config.run_dir / "checkpoint_last.pt", net=config.net).state
        model.load_state_dict(last["model"])
        optimizer.load_state_dict(last["optimizer"])
        scheduler.load_state_dict(last["lr_scheduler"])
        restore_scaler(scaler, last.get("scaler", {}))
        history, best_score, best_epoch = list(last["history"]), last["best_score"], last["best_epoch"]
        bad_epochs, stopped = last["bad_epochs"], last["stopped_early"]
        report(f"resuming {config.run_dir} after epoch {len(history)}")
    # trained through DDP (gradients averaged over the processes); scored and saved as the net itself
    trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world.distributed else model

    val_rows, val_images = rows.iloc[parts["val"]], images[parts["val"]]
    val_blend_sets = {}  # metrics.json key: (images, labels), scored every epoch
    if landmarks is not None and (labels_of(val_rows) == 0).any():
        for key, share in (("val_self_blend", 0.0), ("val_lower_face_blend", 1.0)):
            val_blend_sets[key] = self_blend_set(
                images[parts["val"]], labels_of(val_rows), landmarks[parts["val"]], config.seed,
                None if pictures is None else pictures[parts["val"]],
                None if outlines is None else outlines[parts["val"]], lower_face_share=share)
    for epoch in range(len(history) + 1, config.epochs + 1):
        if stopped:
            break
        epoch_started = time.perf_counter()
        epoch_seed = config.seed * 1000 + epoch  # so a resumed run repeats exactly what it would have done
        seed_everything(epoch_seed * world.size + world.rank)  # augmentation and dropout: each process its own
        generator.manual_seed(epoch_seed * world.size + world.rank)
        loader.dataset.set_epoch(epoch)  # this epoch's self-blends
        if isinstance(loader.sampler, DistributedShuffle):
            loader.sampler.set_epoch(epoch)  # this epoch's order, the same in every process
        lr = optimizer.param_groups[0]["lr"]
        train_metrics = train_one_epoch(trained, criterion, optimizer, scheduler, loader, preprocess, device, scaler,
                                        epoch, progress, world, autocast_dtype)
        sync_buffers(world, model)  # every process scores with rank 0's weights, those its checkpoints hold
        p_val = evaluate_shared(model, val_images, preprocess, device, world)
        val_metrics = frame_and_video_metrics(val_rows["video_id"], labels_of(val_rows), p_val, name="validation")
        entry = {"epoch": epoch, "lr": lr}
        for key, (blend_images, blend_labels) in val_blend_sets.items():
            entry[key] = binary_metrics(blend_labels, evaluate_shared(model, blend_images, preprocess, device, world),
                                        name=f"validation {key[4:].replace('_', ' ')}s")
        score = world.broadcast(monitor_value(val_metrics, entry.get("val_self_blend")))  # one decision for all
        improved = best_score is None or score > best_score
        history.append({**entry, "seconds": round(time.perf_counter() - epoch_started, 1),
                        "train": train_metrics, "val": val_metrics, "monitor": score, "best": improved})
        if improved:
            best_score, best_epoch, bad_epochs = score, epoch, 0
            if world.main:
                save_checkpoint(make_checkpoint(model, preprocess, train_config=run_config, split=split_groups_used,
                                                epoch=epoch, val_metrics=val_metrics),
                                config.run_dir / "checkpoint_best.pt")
        else:
            bad_epochs += 1
        stopped = bad_epochs >= config.patience
        if world.main:
            save_checkpoint(make_checkpoint(
                model, preprocess, train_config=run_config, split=split_groups_used, epoch=epoch,
                val_metrics=val_metrics, optimizer=optimizer.state_dict(), lr_scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict(), history=history, best_score=best_score, best_epoch=best_epoch,
                bad_epochs=bad_epochs, stopped_early=stopped), config.run_dir / "checkpoint_last.pt")
            write_metrics(config.run_dir, config.net, sizes, history, best_epoch, stopped, test=None, notes=notes,
                          fakes=config.fakes)
            plot_curves(history, config.run_dir / "curves.png", title=f"{config.net} ({config.run_dir})")
        report(epoch_line(history[-1], config.epochs))

    world.barrier()  # rank 0 has written checkpoint_best.pt
    best = load_checkpoint(config.run_dir / "checkpoint_best.pt", net=config.net)
    test_rows, test_images = rows.iloc[parts["test"]], images[parts["test"]]
    best_model = best.inference_model(device)
    p_test = evaluate_shared(best_model, test_images, preprocess, device, world)
    y_test = labels_of(test_rows)
    test_metrics = frame_and_video_metrics(test_rows["video_id"], y_test, p_test, name="test", interval=True)
    if world.main:
        write_metrics(config.run_dir, config.net, sizes, history, best_epoch, stopped, test=test_metrics, notes=notes,
                      fakes=config.fakes)
        plot_test_roc(test_rows["video_id"], y_test, p_test, config.run_dir / "roc_test.png",
                      f"{config.net} ({config.run_dir}): test split")
    return TrainResult(run_dir=config.run_dir, net=config.net, epochs_run=len(history), best_epoch=best_epoch,
                       stopped_early=stopped, seconds=time.perf_counter() - started, split_sizes=sizes,
                       best=history[best_epoch - 1], test=test_metrics, notes=notes, main_process=world.main)


def evaluate_shared(model: nn.Module, images: torch.Tensor, preprocess: Preprocess, device: torch.device,
                    world: World) -> np.ndarray:
    """`evaluate` on every image: under torchrun each process scores its share, and every process gets all
    the scores, in order (the metrics are those of the whole set, never of one process's share)."""
    return world.gather(evaluate(model, images[world.shard(len(images))], preprocess, device), len(images))


def ignore(line: str) -> None:
    """The report of processes other than rank 0."""


# -- helpers -----------------------------------------------------------------------------------------
def split_faces(config: TrainConfig, resumed: bool) -> tuple[pd.DataFrame, pd.DataFrame, Path, int]:
    """The labelled faces with their `split` column, the split table, the cache dir, the unknown-label count."""
    manifest, cache_dir = load_manifest(config.faces)
    rows, n_unknown = labelled_faces(manifest, str(cache_dir / "manifest.csv"))
    if config.limit:
        rows = subsample_groups(rows, config.limit, config.seed).reset_index(drop=True)
    if config.fakes == "dataset" and rows["label"].nunique() < 2:
        raise DataError(f"{cache_dir / 'manifest.csv'}: all {len(rows)} labelled faces are {rows['label'].iloc[0]}; "
                        "training needs REAL and FAKE faces")
    if config.fakes != "dataset" and not (rows["label"] == CLASSES[0]).any():
        raise DataError(f"{cache_dir / 'manifest.csv'}: none of its {len(rows)} labelled faces is REAL; "
                        f"--fakes {config.fakes} makes its fakes from REAL faces")
    split_path = config.run_dir / "split.csv" if resumed else config.split_file
    table = read_split(split_path) if split_path else split_groups(rows, config.fractions, config.seed)
    rows["split"] = assign_splits(rows, table, str(split_path or "split"))
    check_split(rows, config.fakes)
    return rows, table, cache_dir, n_unknown


def starting_checkpoint(config: TrainConfig, rows: pd.DataFrame) -> Checkpoint:
    """The checkpoint --init-from names, checked: the same net and input as this run, and none of this run's
    validation or test groups among its training groups (that would make the validation figures a lie)."""
    start = load_checkpoint(config.init_from, net=config.net)
    if config.net_kwargs and create_model(start.net, **config.net_kwargs).net_kwargs != start.net_kwargs:
        raise UsageError(f"--net-kwargs {json.dumps(config.net_kwargs)} differ from {config.init_from}'s net "
                         f"({json.dumps(start.net_kwargs)}); leave --net-kwargs out to fine-tune that net")
    if start.preprocess != net_preprocess(start.net, start.state["input_size"]):
        raise DataError(f"{config.init_from}: its preprocessing {start.preprocess.to_dict()} is not the one train "
                        "uses; it cannot be fine-tuned here")
    trained_on = set(start.state.get("split", {}).get("train", []))
    held_out = set(rows.loc[rows["split"].isin(["val", "test"]), "group"])
    leaked = sorted(trained_on & held_out)
    if leaked:
        raise UsageError(f"{len(leaked)} validation/test group(s) of this run (e.g. {leaked[0]!r}) are training "
                         f"groups of {config.init_from}; reuse its split (--split-file, see the model card) so "
                         "validation and test stay unseen")
    return start


def make_loader(images: torch.Tensor, labels: np.ndarray, config: TrainConfig, generator: torch.Generator,
                device: torch.device, landmarks: np.ndarray | None = None, world: World = World(),
                pictures: np.ndarray | None = None, outlines: np.ndarray | None = None) -> DataLoader:
    """Augmented training batches, shuffled or (balance=sampler) drawn with class weights; with self-blends
    (`config.fakes`, `landmarks` of the images), each real is followed by its own self-blend. Under torchrun
    (`world`), this process's share of each step of that order, the same in every process (DistributedShuffle,
    call its set_epoch)."""
    dataset = FaceDataset(images, labels, build_augment(parse_augment(config.augment)), fakes=config.fakes,
                          landmarks=landmarks, seed=config.seed, pictures=pictures, outlines=outlines,
                          lower_face_share=config.lower_face_blends)
    if world.distributed:
        sampler = DistributedShuffle(lambda order_generator: training_order(dataset, config, order_generator),
                                     len(dataset), world, config.batch_size, seed=config.seed * 1000,
                                     drop_last=len(dataset) > world.size * config.batch_size)
        drop_last = False  # the sampler already left out an incomplete last step
    else:
        sampler, drop_last = training_order(dataset, config, generator), len(dataset) > config.batch_size
    return DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, generator=generator,
                      drop_last=drop_last, num_workers=config.workers, pin_memory=device.type == "cuda")


def training_order(dataset: FaceDataset, config: TrainConfig, generator: torch.Generator) -> Sampler:
    """The order of an epoch's samples: shuffled, a real right before its self-blend (`PairedShuffle`), or
    (balance=sampler) drawn with class weights."""
    if config.balance == "sampler":
        labels = dataset.labels.numpy().astype(int)
        class_weight = 1.0 / np.bincount(labels, minlength=2)
        return WeightedRandomSampler(class_weight[labels], len(labels), generator=generator)
    if config.fakes != "dataset":
        return PairedShuffle(dataset, generator)
    return RandomSampler(dataset, generator=generator)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """Per-step learning rate: linear warm-up, then cosine decay over all epochs."""
    total_steps = config.epochs * steps_per_epoch
    warmup_steps = min(int(config.warmup_epochs * steps_per_epoch), total_steps // 2)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, warmup_steps, total_steps))


def prepare_run_dir(config: TrainConfig) -> tuple[TrainConfig, bool]:
    """The config to run and whether it resumes; refuses to overwrite another run's files."""
    if not config.resume:
        run_dir = config.run_dir or Path("runs") / f"{config.net}-{time.strftime('%Y%m%d-%H%M%S')}"
        taken = [name for name in RUN_FILES if (run_dir / name).exists()]
        if taken:
            raise UsageError(f"{run_dir} already holds a run ({', '.join(taken)}); "
                             "continue it with --resume or choose another --out")
        return replace(config, run_dir=run_dir, epochs=config.epochs or DEFAULT_EPOCHS,
                       precision=config.precision or "auto"), False
    if config.run_dir is None:
        raise UsageError("--resume needs --out RUN_DIR, the run to continue")
    if not (config.run_dir / "checkpoint_last.pt").is_file():
        raise UsageError(f"--resume: {config.run_dir} holds no checkpoint_last.pt to continue from")
    last = load_checkpoint(config.run_dir / "checkpoint_last.pt", net=config.net)
    if not (config.run_dir / "split.csv").is_file():
        raise DataError(f"{config.run_dir / 'split.csv'}: missing, the run cannot be resumed on the same split")
    saved = TrainConfig.from_dict(last.state["train_config"])
    return replace(saved, run_dir=config.run_dir, epochs=config.epochs or saved.epochs, threads=config.threads,
                   workers=config.workers, device=config.device, precision=config.precision or saved.precision or "auto",
                   resume=True), True


def training_autocast(precision: str | None, device: torch.device) -> torch.dtype | None:
    """The autocast type of training steps: float16 on CUDA under auto (with gradient scaling), bfloat16 under
    bf16 (fast where the CPU has native bfloat16, e.g. AVX512-BF16 or AMX), None for float32."""
    if precision == "bf16":
        return torch.bfloat16
    return torch.float16 if precision in ("auto", None) and device.type == "cuda" else None


def self_blend_set(images: torch.Tensor, labels: np.ndarray, landmarks: np.ndarray, seed: int,
                   pictures: np.ndarray | None = None,
                   outlines: np.ndarray | None = None,
                   lower_face_share: float = 0.0) -> tuple[torch.Tensor, np.ndarray]:
    """The REAL images and their self-blends (epoch 0: never a training epoch), with labels, for scoring."""
    dataset = FaceDataset(images, labels, fakes="self-blend", landmarks=landmarks, seed=seed, pictures=pictures,
                          outlines=outlines, lower_face_share=lower_face_share)
    if not len(dataset):
        return torch.empty((0, *images.shape[1:]), dtype=torch.uint8), np.zeros(0, dtype=np.float32)
    return torch.stack([dataset[k][0] for k in range(len(dataset))]), dataset.labels.numpy()


def fake_source_notes(dataset: FaceDataset, outlines_file: Path | None = None) -> list[str]:
    """What the training samples of an epoch are, when they are not simply the cache's faces, and which
    outline the self-blends follow (dense outlines from `outlines_file`, or the five landmarks' hull)."""
    if dataset.fakes == "dataset":
        return []
    n_blends = int(dataset.blended.sum())
    n_real = int((dataset.labels == 0).sum())
    n_fake = len(dataset) - n_real - n_blends
    if dataset.fakes == "self-blend":
        notes = [f"fakes: self-blend: {n_real} REAL train faces, each also self-blended as a FAKE "
                 f"({len(dataset)} samples an epoch; the cache's FAKE train faces are not used)"]
    else:
        notes = [f"fakes: both: {n_real} REAL, {n_fake} FAKE and {n_blends} self-blended train faces an epoch"]
    if dataset.lower_face_share > 0:
        notes.append(f"lower-face blends: {dataset.lower_face_share:.0%} of the self-blends (drawn per face and epoch) "
                     "are blended through the lower face only")
    if dataset.outlines is not None:
        n_dense = int(has_outline(dataset.outlines[dataset.sources[dataset.blended]]).sum())
        notes.append(f"blend masks: the dense outline of {outlines_file} for {n_dense} of the {n_blends} "
                     f"self-blended train faces, the 5-point hull for {n_blends - n_dense} (no outline there)")
    return notes


def blend_outlines_of(rows: pd.DataFrame, blended: pd.Index, cache_dir: Path, preprocess: Preprocess,
                      path: Path) -> np.ndarray:
    """(N, K, 2) the dense outlines of the `blended` rows in the net's input pixels (NaN elsewhere and where
    the file has none); DataError when the file has an outline for none of the REAL train faces."""
    outlines = outlines_of(rows, cache_dir, preprocess, path)
    outlines[~rows.index.isin(blended)] = np.nan
    train_reals = ((rows["label"] == CLASSES[0]) & (rows["split"] == "train")).to_numpy()
    if not has_outline(outlines[train_reals]).any():
        raise DataError(f"--blend-outlines {path}: no outline for any of the {int(train_reals.sum())} REAL train "
                        f"faces of {cache_dir} (a file made for another cache, or the mesh found no face)")
    return outlines


def check_split(rows: pd.DataFrame, fakes: str = "dataset") -> None:
    """Train needs both classes (or REAL faces to self-blend); validation and test need faces."""
    for name in SPLITS:
        part = rows[rows["split"] == name]
        if part.empty:
            raise DataError(f"the {name} split holds no faces (too few groups for a train/val/test split?)")
        if name == "train" and fakes == "dataset" and part["label"].nunique() < 2:
            raise DataError(f"the train split holds only {part['label'].iloc[0]} faces; training needs both classes")
        if name == "train" and fakes != "dataset" and not (part["label"] == CLASSES[0]).any():
            raise DataError(f"the train split holds no REAL faces; --fakes {fakes} makes its fakes from REAL faces")
        if part["label"].nunique() < 2:
            log.warning("the %s split holds only %s faces: its ROC-AUC is undefined", name, part["label"].iloc[0])


def monitor_value(val_metrics: dict, val_self_blend: dict | None = None) -> float:
    """What early stopping watches: validation frame ROC-AUC; when that is undefined (validation holds one
    class), the AUC of its REAL faces against their self-blends if there are any, else minus the log loss."""
    frame = val_metrics["frame"]
    if frame["roc_auc"] is not None:
        return frame["roc_auc"]
    if val_self_blend is not None and val_self_blend["roc_auc"] is not None:
        return val_self_blend["roc_auc"]
    return -frame["log_loss"]


def lr_factor(step: int, warmup_steps: int, total_steps: int, floor: float = 0.01) -> float:
    """Linear warm-up to 1, then cosine decay to `floor`, as a multiple of the base learning rate."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def restore_scaler(scaler: torch.amp.GradScaler, state: dict) -> None:
    """Resume the loss scaler, across devices: a run saved on a CPU (disabled scaler, empty state) resumed on
    CUDA starts a fresh scale instead of failing; CUDA state resumed on a CPU is ignored by the disabled scaler."""
    if state:
        scaler.load_state_dict(state)


def to_model_input(batch: torch.Tensor) -> torch.Tensor:
    """Channels-last batches: faster convolutions on CPU (oneDNN) and with CUDA mixed precision."""
    return batch.contiguous(memory_format=torch.channels_last)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_line(entry: dict, epochs: int) -> str:
    train, frame, video = entry["train"], entry["val"]["frame"], entry["val"]["video"]

    def auc(metrics):
        return "n/a" if metrics["roc_auc"] is None else f"{metrics['roc_auc']:.3f}"

    blends = f" | val self-blend AUC {auc(entry['val_self_blend'])}" if "val_self_blend" in entry else ""
    if "val_lower_face_blend" in entry:
        blends += f", lower-face {auc(entry['val_lower_face_blend'])}"
    return (f"epoch {entry['epoch']}/{epochs}: train loss {train['log_loss']:.3f} acc {train['accuracy']:.3f} "
            f"AUC {auc(train)} | val loss {frame['log_loss']:.3f} acc {frame['accuracy']:.3f} AUC {auc(frame)} "
            f"(video AUC {auc(video)}){blends} | lr {entry['lr']:.2e} | {entry['seconds']:.0f} s"
            + ("  * best" if entry["best"] else ""))


def write_metrics(run_dir: Path, net: str, sizes: dict, history: list[dict], best_epoch: int, stopped: bool,
                  test: dict | None, notes: list[str], fakes: str = "dataset") -> None:
    metrics = {
        "net": net, "fakes": fakes,
        "monitor": "validation frame roc_auc on the cache's labels (when undefined: the validation self-blend "
                   "roc_auc if any, else minus the log loss)",
        "self_blend_validation": "epochs[].val_self_blend (with self-blended fakes): frame metrics of the "
                                 "validation REAL faces against their self-blends (made once, seeded); "
                                 "epochs[].val_lower_face_blend: against lower-face blends of them",
        "video_level": "mean of the frame p_fake of each video_id", "split_sizes": sizes,
        "best_epoch": best_epoch, "stopped_early": stopped, "epochs": history,
        "test": test,  # None until training ends; then the best checkpoint on the test split
        "notes": notes,
    }
    write_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=2).encode())


def plot_test_roc(video_ids, y_true: np.ndarray, p_fake: np.ndarray, path: Path, title: str) -> None:
    from models.metrics import video_scores

    videos = video_scores(video_ids, y_true, p_fake)
    plot_roc({"frames": (y_true, p_fake), "videos": (videos["label"].to_numpy(), videos["p_fake"].to_numpy())},
             path, title)
