"""PhysioNet/CinC Challenge 2012 (set-a.tar.gz + Outcomes-a.txt) -> a MEDS dataset.

Lossless: every ``Time,Parameter,Value`` row becomes one event, so the count of each
parameter in the output equals the raw files' count. The descriptors of each record
(RecordID, Age, Gender, Height, ICUType, and the first Weight at 00:00) become static events
``STATIC//<name>`` with -1 written as a missing value; RecordID is the subject id.
Time series keep their parameter name as code. Each record gets an ``ICU_ADMISSION``
event at 00:00 (the window start) and ``OUTCOME//...`` events at 48:00 from the outcomes
file. Times are anchored at 2000-01-01 00:00 (the challenge publishes offsets only).
Splits are a fixed hash of the record id: 80% train, 10% tuning, 10% held_out.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from twinode.data.importers.output import check_output, staged_output
from twinode.data.readers import hash_split
from twinode.errors import DataError

HEADER = "Time,Parameter,Value"
DESCRIPTORS = ("RecordID", "Age", "Gender", "Height", "ICUType", "Weight")
SERIES = ("ALP", "ALT", "AST", "Albumin", "BUN", "Bilirubin", "Cholesterol", "Creatinine", "DiasABP", "FiO2", "GCS",
          "Glucose", "HCO3", "HCT", "HR", "K", "Lactate", "MAP", "MechVent", "Mg", "NIDiasABP", "NIMAP", "NISysABP",
          "Na", "PaCO2", "PaO2", "Platelets", "RespRate", "SaO2", "SysABP", "Temp", "TroponinI", "TroponinT", "Urine",
          "WBC", "Weight", "pH")
OUTCOME_COLUMNS = {"In-hospital_death": "IN_HOSPITAL_DEATH", "SAPS-I": "SAPS_I", "SOFA": "SOFA",
                   "Length_of_stay": "LENGTH_OF_STAY_D", "Survival": "SURVIVAL_D"}
EPOCH = datetime(2000, 1, 1)
WINDOW_H = 48.0
_US_PER_MIN = 60_000_000


@dataclass
class ImportReport:
    records: int = 0
    events: int = 0
    raw_rows: Counter = field(default_factory=Counter)  # parameter -> rows in the raw files
    dropped: Counter = field(default_factory=Counter)
    splits: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def read_archive(archive: Path) -> pl.DataFrame:
    """All records' rows: ``file, row (line number), record, minutes, parameter, value``."""
    lines: list[str] = []
    files: list[str] = []
    counts: list[int] = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if not member.isfile() or not member.name.endswith(".txt"):
                    continue
                text = _decode(tar.extractfile(member).read(), member.name)
                body = text.splitlines()
                if not body or body[0].strip() != HEADER:
                    got = body[0][:60] if body else "an empty file"
                    raise DataError(f"record has no '{HEADER}' header; got {got!r}", file=f"{archive}:{member.name}", row=1,
                                    hint="each record file starts with the challenge's header line")
                lines.extend(body[1:])
                files.append(member.name)
                counts.append(len(body) - 1)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"cannot read the archive ({type(exc).__name__}: {exc}); it is truncated or not a tar.gz",
                        file=str(archive), hint="download set-a.tar.gz again and check its size") from None
    if not files:
        raise DataError("the archive holds no record files (*.txt)", file=str(archive), hint="expected set-a/<RecordID>.txt entries")
    fidx = np.repeat(np.arange(len(files), dtype=np.int32), counts)
    row = np.concatenate([np.arange(2, c + 2, dtype=np.int32) for c in counts])
    df = pl.DataFrame({"f": fidx, "row": row, "line": lines}).filter(pl.col("line").str.strip_chars() != "")
    parts = pl.col("line").str.splitn(",", 3)
    df = df.with_columns(parts.struct.field("field_0").str.strip_chars().alias("time_s"),
                         parts.struct.field("field_1").str.strip_chars().alias("parameter"),
                         parts.struct.field("field_2").str.strip_chars().alias("value_s"))
    names = pl.Series("file", [f"{archive}:{n}" for n in files])
    _check_fields(df, names)
    hm = pl.col("time_s").str.extract_groups(r"^(\d{1,3}):(\d{2})$")
    df = df.with_columns(hm.struct.field("1").cast(pl.Int64).alias("hh"), hm.struct.field("2").cast(pl.Int64).alias("mm"),
                         pl.col("value_s").cast(pl.Float64, strict=False).alias("value"))
    _first_bad(df, names, pl.col("hh").is_null() | (pl.col("mm") >= 60), "bad time {time_s!r}",
               "times are HH:MM since ICU admission with minutes 00-59")
    _first_bad(df, names, pl.col("value").is_null() | ~pl.col("value").is_finite(), "non-numeric value {value_s!r}",
               "values are numbers; -1 marks a missing descriptor")
    df = df.with_columns((pl.col("hh") * 60 + pl.col("mm")).alias("minutes"))
    stems = pl.Series([Path(n).stem for n in files])
    return df.select("f", "row", "minutes", "parameter", "value").with_columns(
        names.gather(df["f"]).alias("file"), stems.gather(df["f"]).alias("stem"))


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError("record is not UTF-8 text", file=name, hint="the archive holds a binary or corrupted file") from None


def _check_fields(df: pl.DataFrame, names: pl.Series) -> None:
    bad = df.filter(pl.col("value_s").is_null())
    if bad.height:
        r = bad.row(0, named=True)
        raise DataError(f"expected 3 fields Time,Parameter,Value, got {r['line']!r}", file=names[r["f"]], row=r["row"],
                        hint="fix or remove the malformed line")


def _first_bad(df: pl.DataFrame, names: pl.Series, cond: pl.Expr, message: str, hint: str) -> None:
    bad = df.filter(cond.fill_null(True) & (pl.col("parameter") != ""))
    if bad.height:
        r = bad.row(0, named=True)
        raise DataError(message.format(**r), file=names[r["f"]], subject=Path(names[r["f"]]).stem,
                        code=r["parameter"], row=r["row"], hint=hint)


def read_outcomes(path: Path) -> pl.DataFrame:
    """``subject_id`` plus one Float64 column per outcome; -1 (unknown) becomes null."""
    try:
        raw = pl.read_csv(path, infer_schema=False)
    except Exception as exc:
        raise DataError(f"outcomes file is not a readable CSV ({type(exc).__name__})", file=str(path)) from None
    need = ["RecordID", "In-hospital_death"]
    if not set(need) <= set(raw.columns):
        raise DataError(f"outcomes file is not the challenge's CSV: expected columns {need}, got {raw.columns[:6]}",
                        file=str(path), hint="pass Outcomes-a.txt as distributed")
    rid = raw["RecordID"].str.strip_chars().cast(pl.Int64, strict=False)
    if rid.null_count():
        i = int(rid.is_null().arg_true()[0])
        raise DataError(f"missing or non-numeric RecordID {raw['RecordID'][i]!r}", file=str(path), row=i + 2,
                        hint="every outcomes row needs its record id")
    cols = {"subject_id": rid}
    for col, code in OUTCOME_COLUMNS.items():
        if col not in raw.columns:
            continue
        v = raw[col].str.strip_chars().cast(pl.Float64, strict=False)
        bad = v.is_null() & raw[col].is_not_null() & (raw[col].str.strip_chars() != "")
        if bad.any():
            i = int(bad.arg_true()[0])
            raise DataError(f"non-numeric {col} {raw[col][i]!r}", file=str(path), subject=int(rid[i]), row=i + 2)
        cols[code] = v.replace(-1.0, None)
    return pl.DataFrame(cols)


def build_events(rows: pl.DataFrame, outcomes: pl.DataFrame, report: ImportReport, outcomes_file: str) -> pl.DataFrame:
    rows = rows.sort(["f", "row"])
    empty = rows.filter(pl.col("parameter") == "")
    if empty.height:
        report.dropped["empty_parameter"] += empty.height
    report.raw_rows.update(dict(rows.group_by("parameter").len().iter_rows()))
    # Descriptors sit at 00:00, interleaved with the first measurements. Weight is both a
    # descriptor and a series: the first Weight row at 00:00 of a record is the descriptor.
    weight0 = (pl.col("parameter") == "Weight") & (pl.col("minutes") == 0)
    first_weight0 = weight0 & (pl.int_range(pl.len()).over(["f", weight0]) == 0)
    desc = (pl.col("parameter").is_in(DESCRIPTORS[:-1]) | first_weight0)
    rows = rows.filter(pl.col("parameter") != "").with_columns(desc.alias("desc"))
    rid = rows.filter(pl.col("desc") & (pl.col("parameter") == "RecordID")).group_by("f").agg(pl.col("value").first().alias("rid"))
    rows = rows.join(rid, on="f", how="left").with_columns(
        pl.coalesce(pl.col("rid").cast(pl.Int64), pl.col("stem").cast(pl.Int64, strict=False)).alias("subject_id"))
    if rows["subject_id"].null_count():
        r = rows.filter(pl.col("subject_id").is_null()).row(0, named=True)
        raise DataError("record has no RecordID descriptor and its file name is not a number", file=r["file"], row=r["row"])
    dup = rows.select("f", "subject_id").unique().group_by("subject_id").len().filter(pl.col("len") > 1)
    if dup.height:
        raise DataError("two record files share a RecordID", subject=int(dup["subject_id"][0]))

    subjects = rows["subject_id"].unique().sort()
    have = outcomes.filter(pl.col("subject_id").is_in(subjects.implode()))
    missing = subjects.filter(~subjects.is_in(have["subject_id"].implode()))
    if missing.len():
        raise DataError(f"{missing.len()} records have no outcome row (first: RecordID {missing[0]})", file=outcomes_file,
                        subject=int(missing[0]), hint="use the outcomes file that matches the archive")
    extra = outcomes.height - have.height
    if extra:
        report.notes.append(f"{extra} outcome rows have no record in the archive; ignored")

    us = lambda minutes: pl.lit(EPOCH) + pl.duration(microseconds=minutes * _US_PER_MIN)
    series = rows.filter(~pl.col("desc")).select(
        "subject_id", us(pl.col("minutes")).alias("time"), pl.col("parameter").alias("code"), pl.col("value").alias("numeric_value"))
    statics = rows.filter(pl.col("desc") & (pl.col("parameter") != "RecordID")).select(
        "subject_id", us(pl.lit(0)).alias("time"), ("STATIC//" + pl.col("parameter")).alias("code"),
        pl.when(pl.col("value") == -1).then(None).otherwise(pl.col("value")).alias("numeric_value"))
    admission = pl.DataFrame({"subject_id": subjects}).select(
        "subject_id", us(pl.lit(0)).alias("time"), pl.lit("ICU_ADMISSION").alias("code"), pl.lit(None, pl.Float64).alias("numeric_value"))
    outc = have.unpivot(index="subject_id", variable_name="code", value_name="numeric_value").select(
        "subject_id", us(pl.lit(int(WINDOW_H * 60))).alias("time"), ("OUTCOME//" + pl.col("code")).alias("code"), "numeric_value")
    unknown = sorted(set(series["code"].unique()) - set(SERIES))
    if unknown:
        report.notes.append(f"parameters outside the 37 documented series kept as their own codes: {unknown[:10]}")
    events = pl.concat([admission, statics, series, outc], how="vertical_relaxed").with_columns(
        pl.col("time").cast(pl.Datetime("us")), pl.col("numeric_value").cast(pl.Float32))
    return events.sort(["subject_id", "time"], maintain_order=True)


def write_meds(events: pl.DataFrame, out: Path, report: ImportReport) -> None:
    splits = pl.DataFrame({"subject_id": events["subject_id"].unique().sort()})
    splits = splits.with_columns(pl.col("subject_id").map_elements(hash_split, return_dtype=pl.String).alias("split"))
    report.splits.update(dict(splits.group_by("split").len().iter_rows()))
    data_dir, meta = out / "data", out / "metadata"  # a fresh folder (see import_physionet2012)
    schema = pa.schema([("subject_id", pa.int64()), ("time", pa.timestamp("us")), ("code", pa.string()),
                        ("numeric_value", pa.float32())])
    ev = events.join(splits, on="subject_id", how="left", maintain_order="left")
    for split in ("train", "tuning", "held_out"):
        part = ev.filter(pl.col("split") == split).drop("split")
        (data_dir / split).mkdir(parents=True, exist_ok=True)
        pq.write_table(part.to_arrow().cast(schema), data_dir / split / "0.parquet")
    meta.mkdir(parents=True, exist_ok=True)
    pq.write_table(splits.to_arrow().cast(pa.schema([("subject_id", pa.int64()), ("split", pa.string())])),
                   meta / "subject_splits.parquet")
    codes = sorted(events["code"].unique().to_list())
    pq.write_table(pa.table({"code": pa.array(codes, pa.string()), "description": pa.array([_describe(c) for c in codes], pa.string()),
                             "parent_codes": pa.array([None] * len(codes), pa.list_(pa.string()))}), meta / "codes.parquet")
    (meta / "dataset.json").write_text(json.dumps({
        "dataset_name": "PhysioNet/CinC Challenge 2012", "dataset_version": "1.0.0", "etl_name": "twinode.physionet2012",
        "etl_version": "1", "meds_version": "0.4", "license": "ODC-By-1.0",
        "description_uri": "https://physionet.org/content/challenge-2012/1.0.0/",
        "time_anchor": "ICU admission at 2000-01-01T00:00; times are offsets from it"}, indent=1))


def _describe(code: str) -> str:
    if code == "ICU_ADMISSION":
        return "ICU admission: the start of the 48 h record"
    if code.startswith("STATIC//"):
        return f"descriptor {code[8:]} at admission"
    if code.startswith("OUTCOME//"):
        return f"outcome {code[9:]} from the outcomes file"
    return f"time series {code}"


def import_physionet2012(archive: str | Path, outcomes: str | Path, out: str | Path, *,
                         overwrite: bool = False) -> ImportReport:
    """Import into the MEDS folder ``out``: built aside and swapped in when complete, so a failure
    leaves ``out`` as it was. ``out`` may replace only an earlier twinode import unless ``overwrite``."""
    t0 = time.perf_counter()
    archive, outcomes, out = Path(archive), Path(outcomes), Path(out)
    for p in (archive, outcomes):
        if not p.is_file():
            raise DataError("no such file", file=str(p))
    out = check_output(out, [archive, outcomes], overwrite=overwrite)
    report = ImportReport()
    rows = read_archive(archive)
    events = build_events(rows, read_outcomes(outcomes), report, str(outcomes))
    with staged_output(out) as stage:
        write_meds(events, stage, report)
    report.records, report.events = events["subject_id"].n_unique(), events.height
    report.seconds = time.perf_counter() - t0
    return report


def raw_parameter_counts(archive: str | Path) -> Counter:
    """Rows per parameter straight from the archive text: the reference for lossless checks."""
    counts: Counter = Counter()
    with tarfile.open(archive, "r:*") as tar:
        for m in tar:
            if m.isfile() and m.name.endswith(".txt"):
                for line in io.TextIOWrapper(tar.extractfile(m), encoding="utf-8-sig").read().splitlines()[1:]:
                    if line.strip():
                        counts[line.split(",")[1]] += 1
    return counts
