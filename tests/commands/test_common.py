"""The flags that stand for settings (--solver, --up, --rotate) make new settings, checked as a file's are."""

import pytest

from kinestream.commands.common import flag_settings
from kinestream.commands.main import build_parser
from kinestream.errors import SettingsError
from kinestream.settings import Settings, load_settings


def flags(*argv):
    return build_parser().parse_args(["process", "trial.trc", *argv])


def test_the_flags_make_new_settings_and_leave_the_given_ones_as_they_were():
    given = load_settings()
    got = flag_settings(flags("--solver", "opensim", "--up", "z", "--rotate", "y:90"), given)
    assert (got.ik.solver, got.ingest.up, got.ingest.rotate) == ("opensim", "z", "y:90")
    assert got.clean == given.clean and got.reps == given.reps  # the rest as given
    assert given == Settings()  # nothing changed in what was given
    assert flag_settings(flags(), given) is given  # no flag: the settings themselves


def test_a_bad_flag_is_refused_before_any_work_naming_the_setting():
    with pytest.raises(SettingsError) as info:
        flag_settings(flags("--rotate", "q:90"), Settings())
    assert (info.value.key, info.value.given) == ("ingest.rotate", "q:90")
    assert str(info.value).startswith("the command line: ")
