"""Self-describing checkpoints: a plain dict that `torch.load(..., weights_only=True)` reads.

Keys: format, version, net, net_kwargs, input_size, preprocess (face_fraction, mean, std), classes,
train_config, split ({"train": [groups], "val": [...], "test": [...]}), epoch, val_metrics, model
(state dict); the resume checkpoint (`checkpoint_last.pt`) adds optimizer, lr_scheduler, scaler and
the training history. The shipped `best` checkpoints carry no optimizer state; `export_checkpoint` writes
such a copy, its weights optionally stored in float16 (`stored_as`), which load back into float32 nets.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from models.data import CLASSES, Preprocess
from models.registry import create_model
from pipeline.cache import write_atomic
from pipeline.errors import DataError, UsageError

log = logging.getLogger(__name__)

FORMAT = "deepfake-detector-checkpoint"
VERSION = 1
RESUME_KEYS = ("optimizer", "lr_scheduler", "scaler", "history", "best_score", "best_epoch", "bad_epochs",
               "stopped_early")


def make_checkpoint(model: nn.Module, preprocess: Preprocess, *, train_config: dict, split: dict[str, list[str]],
                    epoch: int, val_metrics: dict, **extra) -> dict:
    """The checkpoint dict of `model` (a registered net); `extra` adds e.g. optimizer state for resuming."""
    return {
        "format": FORMAT, "version": VERSION,
        "net": model.name, "net_kwargs": dict(model.net_kwargs), "input_size": model.input_size,
        "preprocess": preprocess.to_dict(), "classes": list(CLASSES),
        "train_config": train_config, "split": split, "epoch": epoch, "val_metrics": val_metrics,
        "model": {key: value.detach().cpu().clone(memory_format=torch.contiguous_format)
                  for key, value in model.state_dict().items()},
        **extra,
    }


def save_checkpoint(checkpoint: dict, path: Path) -> None:
    """Write atomically (a crash leaves the previous checkpoint, never a torn one), making its folder if new."""
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(path), buffer.getvalue())


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: what the net is and how to feed it; `state` is the whole dict."""

    path: Path
    net: str
    net_kwargs: dict
    preprocess: Preprocess
    classes: tuple[str, ...]
    epoch: int
    state: dict

    def build_model(self) -> nn.Module:
        """The net with the checkpoint's weights, in eval mode."""
        try:
            model = create_model(self.net, **self.net_kwargs)
        except UsageError as exc:
            raise DataError(f"{self.path}: {exc}") from None
        try:
            model.load_state_dict(self.state["model"])
        except (RuntimeError, KeyError) as exc:
            raise DataError(f"{self.path}: its weights do not fit a {self.net} net with {self.net_kwargs} ({exc})") \
                from None
        return model.eval()

    def inference_model(self, device: str | torch.device = "cpu") -> nn.Module:
        """`build_model` arranged for scoring on `device`: each batch norm folded into the convolution before it
        where torch.fx can trace the net (the same outputs up to float rounding; timm's EfficientNet cannot be
        traced and keeps its batch norms), in channels-last memory, where a CPU's convolutions run faster
        (bench/classify_speed.py)."""
        from torch.fx.experimental.optimization import fuse
        from torch.fx.proxy import TraceError

        model = self.build_model()
        try:
            model = fuse(model)
        except TraceError:
            pass
        return model.to(device, memory_format=torch.channels_last)


def load_checkpoint(path: str | Path, net: str | None = None) -> Checkpoint:
    """Read and check a checkpoint (weights only, nothing executed); `net` given: refuse another net's."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types (zip, pickle, EOF, runtime) on a corrupt file
        log.debug("cannot load %s", path, exc_info=True)
        raise DataError(f"{path}: corrupt or not a PyTorch checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise DataError(f"{path}: not a checkpoint of this project (no '{FORMAT}' format tag)")
    if state.get("version") != VERSION:
        raise DataError(f"{path}: checkpoint version {state.get('version')!r}, this code reads version {VERSION}")
    if net is not None and state["net"] != net:
        raise UsageError(f"{path} holds a {state['net']} net, not {net}")
    if tuple(state["classes"]) != CLASSES:
        raise DataError(f"{path}: class order {state['classes']}, expected {list(CLASSES)}")
    return Checkpoint(path=path, net=state["net"], net_kwargs=dict(state["net_kwargs"]),
                      preprocess=Preprocess.from_dict(state["preprocess"]), classes=tuple(state["classes"]),
                      epoch=int(state["epoch"]), state=state)


def export_checkpoint(source: str | Path, destination: str | Path, half: bool = False,
                      split_file: str | Path | None = None) -> Path:
    """A copy of `source` to ship: no resume state; with `half`, floating-point weights stored as float16
    (half the size; `load_state_dict` casts them back to the net's float32); with `split_file`, the groups
    of that split recorded (`split_of_file`). Atomic; never onto `source`."""
    checkpoint = load_checkpoint(source)
    destination = Path(destination)
    if destination.exists() and destination.resolve() == checkpoint.path.resolve():
        raise UsageError(f"{destination}: the export would overwrite its own source; name another file")
    state = {key: value for key, value in checkpoint.state.items() if key not in RESUME_KEYS}
    if split_file is not None:
        state["split"] = split_of_file(checkpoint.state.get("split", {}), split_file)
    if half:
        state["model"] = {key: value.half() if value.is_floating_point() else value
                          for key, value in state["model"].items()}
    state["stored_as"] = "float16" if half else state.get("stored_as", "float32")
    checkpoint.build_model()  # refuses weights that do not fit their net before anything is written
    save_checkpoint(state, destination)
    return destination


def split_of_file(run_split: dict, split_file: str | Path) -> dict[str, list[str]]:
    """The groups of each split in `split_file`, to record in place of a run's own (which holds only the
    groups its cache had: on a packed copy, a few test groups). UsageError unless every training and
    validation group of the run has the same role there, so the test groups stay unseen."""
    from models.split import SPLITS, read_split

    try:
        table = read_split(Path(split_file))
    except DataError as exc:
        raise UsageError(str(exc)) from None
    groups = {name: sorted(table.loc[table["split"] == name, "group"]) for name in SPLITS}
    for name in ("train", "val"):
        moved = sorted(set(run_split.get(name, ())) - set(groups[name]))
        if moved:
            raise UsageError(f"{split_file}: {len(moved)} {name} group(s) of the run are not {name} there "
                             f"(e.g. {moved[0]!r}); name the run's own split file")
    return groups
