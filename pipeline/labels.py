"""Where a video's label (REAL / FAKE / unknown) and identity group come from.

Sources, first match wins: a `--labels` CSV, a DFDC-style `metadata.json` beside the file, the
FaceForensics++ tree (`original_sequences` / `manipulated_sequences`), a parent folder named
`real` or `fake` (any case). The group is the split key for training: a fake and the original it
was made from share one group.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.errors import DataError, UsageError

log = logging.getLogger(__name__)

REAL, FAKE, UNKNOWN = "REAL", "FAKE", "unknown"
LABEL_FILE_NAMES = {"metadata.json"}
_KEY_COLUMNS = ("file", "filename", "path", "video", "video_id", "name")
_LABEL_WORDS = {"real": REAL, "fake": FAKE, "0": REAL, "1": FAKE, "original": REAL, "manipulated": FAKE}


@dataclass(frozen=True)
class LabelInfo:
    label: str
    group: str
    source: str  # where the label came from: csv, metadata.json, faceforensics, folder, none


def read_user_table(path: Path, option: str, error=UsageError) -> pd.DataFrame:
    """A CSV the user pointed at with `option`, all columns as text; a clear error when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{option} {path}: file not found")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise error(f"{option} {path}: not a readable CSV ({exc})") from None


def normalise_label(value, where: str) -> str:
    """REAL or FAKE from the usual spellings (real/fake in any case, 0/1 with 1 = FAKE)."""
    word = str(value).strip().lower()
    if word.endswith(".0"):
        word = word[:-2]
    if word not in _LABEL_WORDS:
        raise UsageError(f"{where}: label {value!r} is neither REAL nor FAKE (nor 0/1)")
    return _LABEL_WORDS[word]


class LabelResolver:
    """Answer `resolve(path)` with the label and group of one input file."""

    def __init__(self, labels_csv: str | Path | None = None):
        self._csv = self._read_csv(Path(labels_csv)) if labels_csv else {}
        self._metadata_by_dir: dict[Path, dict] = {}

    @staticmethod
    def _read_csv(path: Path) -> dict[str, tuple[str, str | None]]:
        table = read_user_table(path, "--labels")
        columns = {c.lower().strip(): c for c in table.columns}
        keys = [columns[c] for c in _KEY_COLUMNS if c in columns]
        if "label" not in columns or not keys:
            raise UsageError(
                f"--labels {path}: needs a 'label' column and one of {', '.join(_KEY_COLUMNS)}; "
                f"found {', '.join(table.columns)}"
            )
        group_column = columns.get("group") or columns.get("original")
        entries: dict[str, tuple[str, str | None]] = {}
        for row_number, row in enumerate(table.itertuples(index=False), start=2):
            values = dict(zip(table.columns, row))
            label = normalise_label(values[columns["label"]], f"{path} line {row_number}")
            group = (values[group_column] or None) if group_column else None
            for key_column in keys:
                name = values[key_column]
                if name:
                    entries[name] = (label, group)
                    entries.setdefault(Path(name).name, (label, group))
                    entries.setdefault(Path(name).stem, (label, group))
        return entries

    def _dfdc_metadata(self, directory: Path) -> dict:
        if directory not in self._metadata_by_dir:
            meta_path = directory / "metadata.json"
            metadata = {}
            if meta_path.is_file():
                try:
                    metadata = json.loads(meta_path.read_text(encoding="utf-8"))
                    if not isinstance(metadata, dict):
                        raise ValueError("top level is not an object")
                except (ValueError, OSError) as exc:
                    log.warning("%s: ignored, not a DFDC metadata file (%s)", meta_path, exc)
                    metadata = {}
            self._metadata_by_dir[directory] = metadata
        return self._metadata_by_dir[directory]

    def resolve(self, path: Path) -> LabelInfo:
        path = Path(path)
        for key in (str(path), str(path.resolve()), path.name, path.stem):
            if key in self._csv:
                label, group = self._csv[key]
                return LabelInfo(label, group or path.name, "csv")
        entry = self._dfdc_metadata(path.parent).get(path.name)
        if isinstance(entry, dict) and "label" in entry:
            label = normalise_label(entry["label"], f"{path.parent / 'metadata.json'} entry {path.name}")
            group = entry.get("original") if label == FAKE and entry.get("original") else path.name
            return LabelInfo(label, group, "metadata.json")
        parts = [p.lower() for p in path.resolve().parts]
        if "original_sequences" in parts:
            return LabelInfo(REAL, path.stem, "faceforensics")
        if "manipulated_sequences" in parts:
            return LabelInfo(FAKE, path.stem.split("_")[0], "faceforensics")  # 000_003: target video 000
        for folder in reversed(parts[-4:-1]):  # the three nearest folders
            if folder in ("real", "fake"):
                return LabelInfo(_LABEL_WORDS[folder], path.name, "folder")
        return LabelInfo(UNKNOWN, path.name, "none")


def read_labelled_set(dataset: str | Path) -> pd.DataFrame:
    """A labelled evaluation set: `dataset/labels.csv` with `file` (relative to `dataset`), `label` (REAL or FAKE,
    any case) and optionally `family` ('' where absent) columns, checked: every label valid, every file present.
    UsageError when there is no labels.csv, DataError when it is malformed."""
    dataset = Path(dataset)
    path = dataset / "labels.csv"
    if not path.is_file():
        raise UsageError(f"{path} not found: a labelled set needs a labels.csv (file,label[,family])")
    labels = read_user_table(path, "labelled set", error=DataError)
    missing_columns = {"file", "label"} - set(labels.columns)
    if missing_columns:
        raise DataError(f"{path}: no {' or '.join(sorted(missing_columns))} column (it has: {', '.join(labels.columns)})")
    labels["label"] = labels["label"].str.strip().str.upper()
    bad = labels[~labels["label"].isin([REAL, FAKE])]
    if len(bad):
        raise DataError(f"{path}: label must be REAL or FAKE, got {bad['label'].iloc[0]!r} for {bad['file'].iloc[0]}")
    absent = [name for name in labels["file"] if not (dataset / name).is_file()]
    if absent:
        raise DataError(f"{dataset}: {len(absent)} labelled file(s) not found, e.g. {absent[0]}")
    if "family" not in labels.columns:
        labels["family"] = ""
    return labels
