"""Read event tables: MEDS dataset folders and long CSV/parquet files.

Every reader returns a :class:`RawEvents`: one polars frame with ``subject_id:int64``,
``time`` (``Datetime`` for absolute timestamps, or ``Float64`` hours since a start),
``code:str``, ``numeric_value:float32`` (and ``duration_h`` when present), plus ``_file``
and ``_row`` so later checks can say exactly where a bad value came from. Nothing here
interprets codes; that is the FeatureSpec's job (see ``align.py`` and ``tensorize.py``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from twinode.errors import DataError

REQUIRED = ("subject_id", "time", "code")
OPTIONAL = ("numeric_value", "duration_h")
SPLITS = ("train", "tuning", "held_out")
_TABLE_SUFFIXES = (".parquet", ".csv")


@dataclass
class RawEvents:
    events: pl.DataFrame  # subject_id, time, code, numeric_value[, duration_h], _file, _row
    files: list[str]
    splits: dict[int, str] = field(default_factory=dict)  # empty when the dataset has none
    metadata: dict = field(default_factory=dict)  # metadata/dataset.json, when present

    @property
    def time_is_absolute(self) -> bool:
        return isinstance(self.events.schema["time"], pl.Datetime)


def hash_bucket(subject_id: int) -> int:
    """The subject's bucket 0-9, from its id alone: same on every machine and run."""
    return int(hashlib.sha256(str(int(subject_id)).encode()).hexdigest()[:8], 16) % 10


def hash_split(subject_id: int) -> str:
    """80% train, 10% tuning (bucket 8), 10% held_out (bucket 9); see ``scripts/rotate_splits.py``
    for the other folds."""
    b = hash_bucket(subject_id)
    return "train" if b < 8 else ("tuning" if b == 8 else "held_out")


def read_events(path: str | Path) -> RawEvents:
    """Read a MEDS folder (``data/**/*.parquet``) or one long CSV/parquet file."""
    path = Path(path)
    if not path.exists():
        raise DataError("no such file or folder", file=str(path), hint="give a MEDS dataset folder or a .parquet/.csv file")
    if path.is_dir():
        return read_meds_folder(path)
    if path.suffix not in _TABLE_SUFFIXES:
        raise DataError(f"expected a .parquet or .csv file, got '{path.suffix or 'no suffix'}'", file=str(path))
    frame = read_table(path)
    return RawEvents(_concat([frame]), [str(path)])


def read_meds_folder(root: Path) -> RawEvents:
    data_dir = root / "data"
    shards = sorted(p for p in data_dir.rglob("*") if p.suffix in _TABLE_SUFFIXES) if data_dir.is_dir() else []
    if not shards:
        raise DataError("no event shards found: expected data/**/*.parquet", file=str(root),
                        hint="point at a MEDS dataset root (the folder holding data/ and metadata/)")
    frames = [read_table(p) for p in shards]
    return RawEvents(_concat(frames), [str(p) for p in shards], read_splits(root), read_dataset_json(root))


def read_table(path: Path) -> pl.DataFrame:
    """One shard as a frame with checked column types, plus ``_file`` and ``_row``."""
    if path.suffix == ".csv":
        frame = _read_csv(path)
    else:
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # polars raises several types for truncated or foreign files
            raise DataError(f"not a readable parquet file ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})",
                            file=str(path), hint="the file is truncated or not parquet; re-export or re-copy it") from None
    frame = _check_columns(frame, path)
    return frame.with_columns(pl.lit(str(path)).cast(pl.Categorical).alias("_file"), pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"))


def _read_csv(path: Path) -> pl.DataFrame:
    try:  # all strings first: we parse each column ourselves to name the bad row
        frame = pl.read_csv(path, infer_schema=False)
    except Exception as exc:
        raise DataError(f"not a readable CSV file ({type(exc).__name__})", file=str(path)) from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        _raise_missing(missing, frame.columns, path)
    out = [_parse_int(frame, "subject_id", path), _parse_time(frame, path), pl.col("code")]
    for col in OPTIONAL:
        if col in frame.columns:
            out.append(_parse_float(frame, col, path))
    return frame.select(out)


def _first_bad(frame: pl.DataFrame, col: str, parsed: pl.Series) -> tuple[int, str]:
    bad = (parsed.is_null() & frame[col].is_not_null() & (frame[col].str.strip_chars() != "")).arg_true()
    i = int(bad[0])
    return i, frame[col][i]


def _parse_int(frame: pl.DataFrame, col: str, path: Path) -> pl.Series:
    parsed = frame[col].str.strip_chars().cast(pl.Int64, strict=False)
    if parsed.null_count():  # empty cells included: every event needs a subject
        i = int(parsed.is_null().arg_true()[0])
        raise DataError(f"column '{col}' expects integers, got {frame[col][i]!r}", file=str(path), row=i,
                        hint="subject ids must be whole numbers")
    return parsed


def _parse_float(frame: pl.DataFrame, col: str, path: Path) -> pl.Series:
    parsed = frame[col].str.strip_chars().cast(pl.Float64, strict=False)
    if (parsed.is_null() & frame[col].is_not_null() & (frame[col].str.strip_chars() != "")).any():
        i, raw = _first_bad(frame, col, parsed)
        raise DataError(f"column '{col}' expects numbers, got {raw!r}", file=str(path),
                        subject=frame["subject_id"][i], code=frame["code"][i], row=i, hint="leave the cell empty for 'no value'")
    return parsed.cast(pl.Float32 if col == "numeric_value" else pl.Float64)


def _parse_time(frame: pl.DataFrame, path: Path) -> pl.Series:
    """CSV times are either all numbers (hours since a start) or all ISO timestamps."""
    raw = frame["time"].str.strip_chars()
    as_hours = raw.cast(pl.Float64, strict=False)
    given = raw.is_not_null() & (raw != "")
    if (as_hours.is_not_null() | ~given).all():
        return as_hours
    try:
        as_ts = raw.str.to_datetime(time_unit="us", strict=False)
    except pl.exceptions.ComputeError:  # no single timestamp format fits
        as_ts = pl.Series("time", [None] * len(raw), pl.Datetime("us"))
    if (as_ts.is_not_null() | ~given).all():
        return as_ts
    parsed = as_ts if as_ts.is_not_null().sum() >= as_hours.is_not_null().sum() else as_hours
    i, bad = _first_bad(frame.with_columns(raw.alias("time")), "time", parsed)
    raise DataError(f"unparseable time {bad!r}: expected hours since start (a number) or an ISO timestamp throughout",
                    file=str(path), subject=frame["subject_id"][i], code=frame["code"][i], row=i)


def _raise_missing(missing: list[str], got: list[str], path: Path):
    raise DataError(f"missing required column(s) {missing}; got {list(got)}", file=str(path),
                    hint="event tables need subject_id, time, code (numeric_value optional)")


def _check_columns(frame: pl.DataFrame, path: Path) -> pl.DataFrame:
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        _raise_missing(missing, frame.columns, path)
    schema = frame.schema
    if not schema["subject_id"].is_integer():
        raise DataError(f"column 'subject_id' must be an integer type, got {schema['subject_id']}", file=str(path))
    t = schema["time"]
    if not (isinstance(t, pl.Datetime) or t.is_numeric() or t == pl.Date):
        raise DataError(f"column 'time' must be a timestamp or float hours, got {t}", file=str(path),
                        hint="cast time to timestamp[us] (MEDS) or to float hours since the window start")
    if schema["code"] not in (pl.String, pl.Categorical) and not isinstance(schema["code"], pl.Enum):
        raise DataError(f"column 'code' must be a string, got {schema['code']}", file=str(path))
    cols = [pl.col("subject_id").cast(pl.Int64)]
    cols.append(pl.col("time").cast(pl.Datetime("us")) if isinstance(t, pl.Datetime) or t == pl.Date else pl.col("time").cast(pl.Float64))
    cols.append(pl.col("code").cast(pl.String))
    for col, dtype in (("numeric_value", pl.Float32), ("duration_h", pl.Float64)):
        if col in frame.columns:
            if not frame.schema[col].is_numeric() and frame.schema[col] != pl.Null:
                raise DataError(f"column '{col}' must be numeric, got {frame.schema[col]}", file=str(path))
            cols.append(pl.col(col).cast(dtype))
    if "numeric_value" not in frame.columns:
        cols.append(pl.lit(None, pl.Float32).alias("numeric_value"))
    return frame.select(cols)


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    kinds = {str(f.schema["time"]) for f in frames}
    if len(kinds) > 1:
        raise DataError(f"shards mix time types {sorted(kinds)}", file=frames[0]["_file"][0] if frames[0].height else None,
                        hint="use timestamps in every shard, or float hours in every shard")
    return pl.concat(frames, how="diagonal_relaxed")


def read_splits(root: Path) -> dict[int, str]:
    path = root / "metadata" / "subject_splits.parquet"
    if not path.exists():
        return {}
    try:
        frame = pl.read_parquet(path)
    except Exception:
        raise DataError("not a readable parquet file", file=str(path), hint="the file is truncated or not parquet") from None
    if not {"subject_id", "split"} <= set(frame.columns):
        _raise_missing(sorted({"subject_id", "split"} - set(frame.columns)), frame.columns, path)
    bad = frame.filter(~pl.col("split").is_in(SPLITS))
    if bad.height:
        raise DataError(f"unknown split {bad['split'][0]!r}; expected one of {list(SPLITS)}", file=str(path),
                        subject=bad["subject_id"][0])
    return dict(zip(frame["subject_id"].to_list(), frame["split"].to_list()))


def read_dataset_json(root: Path) -> dict:
    path = root / "metadata" / "dataset.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"metadata/dataset.json is not valid JSON ({exc})", file=str(path)) from None
