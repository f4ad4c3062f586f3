"""Small datasets built at test time: a MEDS folder and a challenge-format archive."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = REPO / ".." / "shared" / "data"
T0 = datetime(2100, 3, 1, 8, 0)

TINY_SPEC = {
    "name": "tiny", "window_hours": 24, "window_start": {"code": "ICU_ADMISSION//", "match": "prefix"},
    "features": [
        {"name": "HR", "role": "measurement", "code": "LAB//HR", "valid_range": [10, 300]},
        {"name": "GLU", "role": "measurement", "code": "LAB//GLU", "transform": "log1p"},
        {"name": "INS", "role": "intervention", "code": "INFUSION_START//INS", "kind": "infusion", "end_code": "INFUSION_END//INS"},
        {"name": "AGE", "role": "static", "code": "AGE"},
        {"name": "DEATH", "role": "outcome", "code": "DEATH"},
    ],
}

MEDS_SCHEMA = pa.schema([("subject_id", pa.int64()), ("time", pa.timestamp("us")), ("code", pa.string()),
                         ("numeric_value", pa.float32())])


def subject_events(sid: int, hr: list[float], start_h: float = 0.0) -> list[tuple]:
    """One ICU stay: admission, age, hourly HR, one glucose, an insulin infusion, an outcome."""
    at = lambda h: T0 + timedelta(hours=start_h + h)
    rows = [(sid, at(-2), "AGE", 60.0 + sid), (sid, at(0), "ICU_ADMISSION//MICU", None)]
    rows += [(sid, at(i + 0.5), "LAB//HR", v) for i, v in enumerate(hr)]
    rows += [(sid, at(2.0), "LAB//GLU", 140.0), (sid, at(3.0), "INFUSION_START//INS", 2.0),
             (sid, at(5.5), "INFUSION_END//INS", 5.0), (sid, at(30.0), "LAB//HR", 80.0), (sid, at(40.0), "DEATH", float(sid % 2))]
    return sorted(rows, key=lambda r: r[1])


def write_events(path: Path, rows: list[tuple]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(zip(*rows))
    table = pa.table({"subject_id": pa.array(cols[0], pa.int64()), "time": pa.array(cols[1], pa.timestamp("us")),
                      "code": pa.array(cols[2], pa.string()), "numeric_value": pa.array(cols[3], pa.float32())})
    pq.write_table(table, path)
    return path


@pytest.fixture
def tiny_meds(tmp_path) -> Path:
    """12 subjects over two shards, with splits, codes and dataset.json."""
    root = tmp_path / "meds"
    rows = [r for s in range(1, 13) for r in subject_events(s, [70 + s, 75 + s, 72 + s, 71 + s])]
    write_events(root / "data" / "train" / "0.parquet", [r for r in rows if r[0] <= 8])
    write_events(root / "data" / "tuning" / "0.parquet", [r for r in rows if r[0] > 8])
    (root / "metadata").mkdir()
    split = ["train" if s <= 8 else ("tuning" if s <= 10 else "held_out") for s in range(1, 13)]
    pq.write_table(pa.table({"subject_id": pa.array(range(1, 13), pa.int64()), "split": split}),
                   root / "metadata" / "subject_splits.parquet")
    (root / "metadata" / "dataset.json").write_text(json.dumps({"dataset_name": "tiny"}))
    return root


def make_archive(path: Path, records: dict[str, str | bytes], truncate: int | None = None) -> Path:
    """A challenge-style tar.gz of ``set-a/<name>`` text files; ``truncate`` cuts its bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in records.items():
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(f"set-a/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    path.write_bytes(raw[:truncate] if truncate else raw)
    return path


def record_text(rid: int, extra: str = "") -> str:
    return ("Time,Parameter,Value\n"
            f"00:00,RecordID,{rid}\n00:00,Age,54\n00:00,Gender,0\n00:00,GCS,15\n00:00,Height,-1\n00:00,ICUType,4\n"
            "00:00,Weight,-1\n00:07,HR,73\n00:07,Weight,80.5\n00:37,HR,77\n00:37,HR,77\n01:37,Glucose,140\n"
            "47:59,HR,90\n48:00,Temp,37.1\n" + extra)


def outcomes_text(rids: list[int], death: dict[int, int] | None = None) -> str:
    death = death or {}
    lines = ["RecordID,SAPS-I,SOFA,Length_of_stay,Survival,In-hospital_death"]
    lines += [f"{r},10,-1,5,-1,{death.get(r, 0)}" for r in rids]
    return "\n".join(lines) + "\n"


@pytest.fixture
def tiny_challenge(tmp_path) -> tuple[Path, Path]:
    rids = list(range(140001, 140011))
    archive = make_archive(tmp_path / "set-a.tar.gz", {f"{r}.txt": record_text(r) for r in rids})
    outcomes = tmp_path / "Outcomes-a.txt"
    outcomes.write_text(outcomes_text(rids, {140003: 1}))
    return archive, outcomes
