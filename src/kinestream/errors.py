"""The errors a user can fix, which the command line turns into a single error line.

:class:`KinestreamError` is the root; each subclass names what went wrong
(a setting, the input, an asset, the solver, a wire frame, a recording). All
of them carry the same optional attributes, so a caller can tell what was
given and what is valid without reading the message:

>>> from kinestream.errors import KinestreamError, SettingsError
>>> exc = SettingsError("clean.cutoff_hz = -1; expected a number > 0", key="clean.cutoff_hz", given=-1, valid="> 0")
>>> isinstance(exc, KinestreamError), exc.key, exc.given, exc.valid
(True, 'clean.cutoff_hz', -1, '> 0')
>>> str(exc)
'clean.cutoff_hz = -1; expected a number > 0'
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "KinestreamError",
    "SettingsError",
    "InputError",
    "AssetError",
    "SolverError",
    "ProtocolError",
    "RecordingError",
]


class KinestreamError(Exception):
    """A problem the user can fix: bad input, a missing file, a missing asset.

    The root of kinestream's errors; code raises one of its subclasses. The
    message (the one positional argument) is the whole sentence the command
    line prints: what was given and what is valid or what to do.

    Parameters
    ----------
    *args
        The message, as for :class:`Exception`; ``str(exc)`` is this message.
    given : Any, optional
        What was given: a value, a path, a name.
    valid : Any, optional
        What is valid or what to do instead: a short string or a collection of valid values.
    key : str, optional
        The setting or field the value belongs to (``"clean.cutoff_hz"``), when there is one.

    Attributes
    ----------
    given, valid, key
        As given; None when not known.
    """

    def __init__(self, *args: object, given: Any = None, valid: Any = None, key: str | None = None) -> None:
        super().__init__(*args)
        self.given = given
        self.valid = valid
        self.key = key

    def reworded(self, message: str) -> KinestreamError:
        """The same error (its class and attributes) with ``message`` as its message.

        For a caller that adds where the error happened (``f"static trial {path}: {exc}"``)
        without turning it into another kind of error.
        """
        new = type(self).__new__(type(self), message)
        new.__dict__.update(self.__dict__)
        return new


class SettingsError(KinestreamError):
    """A setting that is unknown or has a value out of range.

    From a config file, a settings dict or the arguments of a stage; ``key`` names
    the setting (``"section.name"`` where the section is known).
    """


class InputError(KinestreamError):
    """Input that cannot be used: keypoints, markers, a .trc, .mot or .c3d file, a trial, a folder or path.

    ``given`` is what was given (a path, a name, a shape, a value); ``valid`` what would do.
    """


class AssetError(KinestreamError):
    """An asset that is missing or not the one expected: the augmenter, the model, the wheel they come from.

    Also an optional package that is not installed; ``valid`` says how to get it where known.
    """


class SolverError(KinestreamError):
    """Inverse kinematics, scaling or OpenSim failed, or the model cannot be solved as given.

    ``given`` is the model, coordinate or value at fault where known.
    """


class ProtocolError(KinestreamError):
    """A wire frame (ZeroMQ or MQTT) that cannot be made or read, or a socket or broker that cannot be used.

    :class:`kinestream.live.protocol.Rejected` is the one for a received frame that is refused.
    """


class RecordingError(KinestreamError):
    """A recording that cannot be written, held or recovered.

    ``given`` is the recording's path or part at fault where known.
    """
