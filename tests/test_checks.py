"""One rule for a valid subject, frame rate and count, whichever command or stage is given it."""

from __future__ import annotations

import math

import pytest

from kinestream import checks
from kinestream.commands.main import main
from kinestream.errors import InputError, SettingsError


def test_the_subject_rule():
    assert checks.subject(1.75, 70) == (1.75, 70.0)
    assert checks.subject("1.6", "55.5") == (1.6, 55.5)
    for height, mass, key in [
        (175, 70, "subject.height"),
        (2.7, 70, "subject.height"),
        (0.3, 70, "subject.height"),
        (math.nan, 70, "subject.height"),
        (True, 70, "subject.height"),
        (1.75, 5, "subject.mass"),
        (1.75, -70, "subject.mass"),
        (1.75, "heavy", "subject.mass"),
    ]:
        with pytest.raises(SettingsError) as info:
            checks.subject(height, mass)
        assert info.value.key == key
        assert info.value.given is (height if key == "subject.height" else mass)
        assert info.value.valid == ((0.5, 2.5) if key == "subject.height" else (10.0, 300.0))


@pytest.mark.parametrize("command", ["augment", "scale", "process"])
def test_every_command_refuses_the_same_subject(command, tmp_path, capsys):
    """Scaling alone used to take a 2.7 m subject the augmenter refused; now every command says the same."""
    missing = str(tmp_path / "absent.trc")  # the subject is checked before the file is read
    assert main([command, missing, "--height", "2.7", "--mass", "70"]) == 2
    assert "height 2.7 m is not valid" in capsys.readouterr().err
    assert main([command, missing, "--height", "1.7", "--mass", "400"]) == 2
    assert "mass 400.0 kg is not valid" in capsys.readouterr().err


def test_numbers_rates_and_counts():
    assert checks.number("cutoff", "6", 0.1, 30, "Hz") == 6.0
    with pytest.raises(SettingsError) as info:
        checks.number("cutoff", 40, 0.1, 30, "Hz")
    assert (info.value.key, info.value.given, info.value.valid) == ("cutoff", 40, "a number from 0.1 to 30")
    assert checks.positive("scale", 1.2) == 1.2
    for bad in (0, -1, math.inf, "x", False):
        with pytest.raises(SettingsError) as info:
            checks.positive("scale", bad)
        assert (info.value.key, info.value.given) == ("scale", bad)
    assert checks.integer("gaps", 3) == 3
    for bad in (-1, 2.0, True):
        with pytest.raises(SettingsError) as info:
            checks.integer("gaps", bad)
        assert (info.value.key, info.value.given, info.value.valid) == ("gaps", bad, "an integer >= 0")
    assert checks.rate(60) == 60.0
    with pytest.raises(InputError) as info:
        checks.rate(0)
    assert info.value.given == 0
