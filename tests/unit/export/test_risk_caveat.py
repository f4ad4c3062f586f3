"""twinode-predict never prints a risk without saying how far its head was validated."""

from twinode.cli.predict import risk_caveat


def test_a_risk_without_validation_or_with_a_weak_head_says_so():
    assert "not validated" in risk_caveat(None)
    assert "not validated" in risk_caveat({"auroc": None, "positives": 0})
    assert "unreliable" in risk_caveat({"auroc": 0.55, "positives": 80})
    assert "unreliable" in risk_caveat({"auroc": 0.9, "positives": 5})
    ok = risk_caveat({"auroc": 0.85, "positives": 73})
    assert "unreliable" not in ok and "0.85 on 73" in ok
