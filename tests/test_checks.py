"""One rule for a valid subject, frame rate and count, whichever command or stage is given it."""

from __future__ import annotations

import math

import pytest

from kinestream import checks
from kinestream.commands.main import main
from kinestream.errors import KinestreamError


def test_the_subject_rule():
    assert checks.subject(1.75, 70) == (1.75, 70.0)
    assert checks.subject("1.6", "55.5") == (1.6, 55.5)
    for height, mass, said in [
        (175, 70, "looks like centimetres"),
        (2.7, 70, r"height 2\.7 m is not valid; .* \(0\.5 to 2\.5\)"),
        (0.3, 70, "height"),
        (math.nan, 70, "height"),
        (True, 70, "height"),
        (1.75, 5, r"mass 5 kg is not valid; .* \(10 to 300\)"),
        (1.75, -70, "mass"),
        (1.75, "heavy", "mass"),
    ]:
        with pytest.raises(KinestreamError, match=said):
            checks.subject(height, mass)


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
    with pytest.raises(KinestreamError, match=r"cutoff=40 is not valid; it must be a number from 0\.1 to 30 Hz"):
        checks.number("cutoff", 40, 0.1, 30, "Hz")
    assert checks.positive("scale", 1.2) == 1.2
    for bad in (0, -1, math.inf, "x", False):
        with pytest.raises(KinestreamError, match="above 0"):
            checks.positive("scale", bad)
    assert checks.integer("gaps", 3) == 3
    for bad in (-1, 2.0, True):
        with pytest.raises(KinestreamError, match="integer >= 0"):
            checks.integer("gaps", bad)
    assert checks.rate(60) == 60.0
    with pytest.raises(KinestreamError, match="frame rate 0 Hz is not valid"):
        checks.rate(0)
