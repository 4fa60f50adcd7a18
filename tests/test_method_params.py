"""audit/methods/params.py: the one parser of --method-param values that every method uses."""

from __future__ import annotations

import pytest
from cvaudit.audit.errors import ConfigError
from cvaudit.audit.methods.params import as_bool, as_floats, as_int, as_number


def test_bool_words_and_defaults():
    assert [as_bool(v, "x") for v in ("1", "TRUE", " yes ", "on", True)] == [True] * 5
    assert [as_bool(v, "x") for v in ("0", "False", "no", "OFF", False)] == [False] * 5
    assert as_bool(None, "x", default=True) is True and as_bool(None, "x", default=False) is False
    for bad in ("maybe", None, "2"):
        with pytest.raises(ConfigError, match="method param x must be true or false"):
            as_bool(bad, "x")


def test_numbers_ints_and_lists():
    assert as_number("2.5", "a") == 2.5 and as_number("4.0", "n", int) == 4 and isinstance(as_number("4", "n", int), int)
    with pytest.raises(ConfigError, match="whole number"):
        as_number("4.5", "n", int)
    with pytest.raises(ConfigError, match="must be a number"):
        as_number("many", "n")
    assert as_int(None, "n") is None and as_int("", "n") is None and as_int("7", "n") == 7
    assert as_floats("0, 2,4", "alpha") == [0.0, 2.0, 4.0] and as_floats(3, "alpha") == [3.0]
    assert as_floats(("1", 2), "alpha") == [1.0, 2.0]
    with pytest.raises(ConfigError, match="comma list"):
        as_floats("lots", "alpha")
    with pytest.raises(ConfigError, match="empty"):
        as_floats(" , ", "alpha")


def test_every_method_uses_the_shared_parser():
    """The same words are accepted and refused by disca, steering and checkpoint."""
    from cvaudit.audit.methods.base import get_method_class

    disca = get_method_class("disca")
    assert disca(country_prior="yes").country_prior is True
    with pytest.raises(ConfigError, match="method param country_prior must be true or false"):
        disca(country_prior="perhaps")
    with pytest.raises(ConfigError, match="method param samples must be a whole number"):
        disca(samples="2.5")
    steering = get_method_class("steering")
    assert steering(fluency="off", alpha="0,2").fluency is False
    with pytest.raises(ConfigError, match="method param force must be true or false"):
        steering(force="perhaps")
    with pytest.raises(ConfigError, match="method param calibration_fraction must be a number"):
        steering(calibration_fraction="a third")


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", float("nan"), float("inf")])
def test_non_finite_numbers_are_refused(bad):
    with pytest.raises(ConfigError, match="finite number"):
        as_number(bad, "x")
    with pytest.raises(ConfigError, match="finite number"):
        as_floats(bad if isinstance(bad, float) else f"1,{bad}", "alpha")


def test_sizes_that_cannot_run_are_refused_up_front():
    """Checked when the method is made, not after scoring (a negative bootstrap, 1e12 DISCA samples)."""
    from cvaudit.audit.methods.base import get_method_class

    steering, disca = get_method_class("steering"), get_method_class("disca")
    for params in ({"n_boot": -5}, {"n_boot": 0}, {"batch_size": 0}, {"max_calibration": 0}, {"alpha": "nan"}):
        with pytest.raises(ConfigError):
            steering(**params)
    assert steering(n_boot=200, batch_size=2).n_boot == 200
    with pytest.raises(ConfigError, match="samples must be <= 100000"):
        disca(samples="1e12")
    with pytest.raises(ConfigError, match="finite"):
        disca(kappa="inf")
