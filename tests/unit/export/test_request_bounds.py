"""Requests at the boundary: the registry's pyfunc model refuses unknown keys and returns a
twin's argument error as one line (no TorchScript traceback, no source paths); a history
beyond the size cap is refused before the twin runs."""

from __future__ import annotations

import pydantic
import pytest

from twinode.export.pyfunc import ForecastRequest, TwinPyfunc
from twinode.export.torchscript import load_verified_twin


def test_a_misspelt_key_is_an_error_not_a_dropped_plan():
    with pytest.raises(pydantic.ValidationError, match="plans"):
        ForecastRequest(**{"history": [], "query_times": [1.0], "plans": [{"name": "VASO", "time_h": 1.0, "amount": 8.0}]})
    with pytest.raises(pydantic.ValidationError, match="dose"):
        ForecastRequest(**{"history": [], "query_times": [1.0], "plan": [{"name": "VASO", "time_h": 1.0, "dose": 8.0,
                                                                         "amount": 8.0}]})


def test_twin_argument_errors_come_back_as_one_line(twin_file):
    model = TwinPyfunc()
    model.twin, model.meta = load_verified_twin(twin_file)
    far = {"history": [{"time": 0.0, "name": "MAP", "value": 63.0}], "query_times": [1.0e7]}
    with pytest.raises(ValueError) as err:
        model.predict(None, [far])
    msg = str(err.value)
    assert msg.startswith("request 0: ") and "query" in msg
    assert "\n" not in msg and "Traceback" not in msg and ".py" not in msg
    ok = model.predict(None, [{"history": [{"time": 0.0, "name": "MAP", "value": 63.0}], "query_times": [2.0]}])
    assert len(ok) == len(model.meta["measurements"])


def test_a_history_beyond_the_size_cap_is_refused(twin_file, tmp_path, monkeypatch):
    import twinode.limits as limits
    from twinode.errors import DataError
    from twinode.export.inputs import read_history

    monkeypatch.setattr(limits, "MAX_HISTORY_POINTS", 3)
    _, meta = load_verified_twin(twin_file)
    path = tmp_path / "h.csv"
    path.write_text("subject_id,time,code,numeric_value\n" + "".join(f"1,{t}.0,MAP,70\n" for t in range(5)))
    with pytest.raises(DataError, match="history time points: 5 exceeds the limit of 3"):
        read_history(path, meta)
    monkeypatch.setattr(limits, "MAX_HISTORY_POINTS", 10)
    assert len(read_history(path, meta).times) == 5
