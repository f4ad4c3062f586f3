"""Bounded YAML/JSON parsing and forecast size caps: refused with a clear error, quickly, in bounded memory."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from twinode.errors import DataError
from twinode.limits import MAX_QUERY_POINTS, check_forecast, load_document, load_file, load_json, load_yaml

# 9 references per level, 9 levels: 9^9 = 387 million values once expanded, in a few hundred bytes.
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8)
) + "doses: *i\n"


def test_the_alias_bomb_is_small():
    assert len(BOMB) < 700


def test_alias_bomb_is_refused_quickly():
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="once YAML aliases .* are expanded.*alias bomb"):
        load_yaml(BOMB, file="plan.yaml", what="plan")
    assert time.perf_counter() - t0 < 2.0


def test_alias_bomb_is_refused_in_bounded_memory(tmp_path):
    """In a process limited to 1 GiB of address space (the bomb took 4.3 GB through twinode-predict)."""
    (tmp_path / "plan.yaml").write_text(BOMB)
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from twinode.errors import DataError\n"
        "from twinode.limits import load_file\n"
        "try:\n"
        f"    load_file({str(tmp_path / 'plan.yaml')!r}, 'plan')\n"
        "except DataError as exc:\n"
        "    print('refused:', exc)\n"
        "    sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "alias bomb" in out.stdout and len(out.stdout) < 1000


def test_anchors_within_the_limit_still_work():
    doc = load_yaml("base: &b {name: VASO, amount: 8}\ndoses:\n  - {<<: *b, time_h: 1}\n  - {<<: *b, time_h: 2}\n")
    assert [d["time_h"] for d in doc["doses"]] == [1, 2] and doc["doses"][1]["name"] == "VASO"


@pytest.mark.parametrize("kind", ["YAML", "JSON"])
def test_deep_nesting_is_refused(kind):
    text = "[" * 5000 + "]" * 5000
    with pytest.raises(DataError, match="nested deeper than"):
        load_document(text, kind, file="x")


def test_unsafe_yaml_tags_and_bad_json_are_data_errors():
    with pytest.raises(DataError, match="not valid YAML"):
        load_yaml("!!python/object/apply:os.system ['true']")
    with pytest.raises(DataError, match="not valid JSON"):
        load_json('{"a": ')
    assert load_json('{"s": "[[[[\\"{{"}') == {"s": '[[[["{{'}  # brackets inside strings are not nesting


def test_large_files_are_refused_before_reading(tmp_path):
    big = tmp_path / "plan.json"
    with open(big, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse: costs no disk
    with pytest.raises(DataError, match="bytes, the limit is"):
        load_file(big, "plan")


def test_forecast_caps():
    assert check_forecast(49, 200, 4) < 1 << 30
    with pytest.raises(DataError, match=r"forecast points .* exceeds the limit .*larger --step than 0.001 h"):
        check_forecast(10_000_001, 200, 4, step=0.001)
    with pytest.raises(DataError, match="--samples"):
        check_forecast(10, 10_000_000, 4)
    with pytest.raises(DataError, match="GiB"):
        check_forecast(MAX_QUERY_POINTS, 5000, 4)
