"""The rules for values a user gives, in one place: each says what was given and what is valid.

Every stage checks its inputs with these, so that a subject, a frame rate or a
count means the same thing to every command, the service and the API.
"""

from __future__ import annotations

import math

import numpy as np

from kinestream.errors import InputError, KinestreamError, SettingsError

#: The subjects the augmenter was trained on span these; the scaled model and the rep measures assume them too.
HEIGHT_M = (0.5, 2.5)
MASS_KG = (10.0, 300.0)


def _float(value) -> float:
    """``value`` as a float, NaN when it is not a number (a bool is not one)."""
    if isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def number(what: str, value, low: float = -math.inf, high: float = math.inf, unit: str = "") -> float:
    """``value`` as a float within [low, high]; else KinestreamError naming ``what``, the value and the range."""
    x = _float(value)
    if not (math.isfinite(x) and low <= x <= high):
        if math.isinf(high):
            rule = f"a number of at least {low:g}" if math.isfinite(low) else "a finite number"
        else:
            rule = f"a number from {low:g} to {high:g}"
        raise SettingsError(
            f"{what}={value!r} is not valid; it must be {rule}{' ' + unit if unit else ''}",
            key=what,
            given=value,
            valid=rule,
        )
    return x


def positive(what: str, value, unit: str = "") -> float:
    """``value`` as a finite float above 0."""
    x = _float(value)
    if not (math.isfinite(x) and x > 0.0):
        raise SettingsError(
            f"{what}={value!r} is not valid; it must be a finite number above 0{' ' + unit if unit else ''}",
            key=what,
            given=value,
            valid="a finite number above 0",
        )
    return x


def integer(what: str, value, lower: int = 0) -> int:
    """``value`` as an int of at least ``lower`` (a float such as 3.0 is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lower:
        raise SettingsError(
            f"{what}={value!r} is not valid; it must be an integer >= {lower}",
            key=what,
            given=value,
            valid=f"an integer >= {lower}",
        )
    return int(value)


def rate(value) -> float:
    """A frame rate in Hz: a finite number above 0."""
    x = _float(value)
    if not (math.isfinite(x) and x > 0):
        raise InputError(
            f"frame rate {value!r} Hz is not valid; it must be a positive number of frames per second",
            given=value,
            valid="a positive number of frames per second",
        )
    return x


def subject(height, mass) -> tuple[float, float]:
    """The subject's height (m) and mass (kg), checked against the one rule every stage uses.

    A height given in centimetres (175) is refused with a hint to give metres.
    """
    h = _float(height)
    if math.isfinite(h) and 100.0 <= h <= 250.0:
        raise SettingsError(
            f"height {height!r} looks like centimetres; give the subject's height in metres (e.g. 1.75)",
            key="subject.height",
            given=height,
            valid=HEIGHT_M,
        )
    if not (math.isfinite(h) and HEIGHT_M[0] <= h <= HEIGHT_M[1]):
        raise SettingsError(
            f"height {height!r} m is not valid; give the subject's height in metres "
            f"({HEIGHT_M[0]:g} to {HEIGHT_M[1]:g})",
            key="subject.height",
            given=height,
            valid=HEIGHT_M,
        )
    m = _float(mass)
    if not (math.isfinite(m) and MASS_KG[0] <= m <= MASS_KG[1]):
        raise SettingsError(
            f"mass {mass!r} kg is not valid; give the subject's mass in kilograms ({MASS_KG[0]:g} to {MASS_KG[1]:g})",
            key="subject.mass",
            given=mass,
            valid=MASS_KG,
        )
    return h, m


def path_segment(what: str, name) -> str:
    r"""``name`` as one file or folder name that stays inside the folder it is joined to.

    Refused: empty, ``.`` or ``..``, a separator (``/`` or ``\``), or a control character (a NUL ends a path;
    a line break splits a listing), so that ``folder / name`` never names anything outside ``folder``.
    """
    text = name if isinstance(name, str) else ""
    bad = (
        not text
        or text in (".", "..")
        or any(c in "/\\" for c in text)
        or any(ord(c) < 32 or ord(c) == 127 for c in text)
    )
    if bad:
        raise InputError(
            f"{what} {name!r} is not valid; it must be one folder name: not empty, not '.' or '..', without "
            "'/', '\\' or control characters (outputs are written in a folder of that name)",
            key=what,
            given=name,
            valid="one folder name",
        )
    return text


def relative_folder(what: str, name) -> str:
    """``name`` as a relative folder path (names joined by ``/``), each part a :func:`path_segment`."""
    text = name if isinstance(name, str) else ""
    for part in text.split("/") if text else [text]:
        try:
            path_segment(what, part)
        except KinestreamError:
            raise InputError(
                f"{what} {name!r} is not valid; it must be folder names joined by '/', none of them empty, "
                "'.' or '..', without '\\' or control characters (outputs are written in a folder of that name)",
                key=what,
                given=name,
                valid="folder names joined by /",
            ) from None
    return text


SUBJECT_ID_CHARS = 64  # a subject's id: "SESSION_<id>_markers.c3d" stays far below a file name's 255 bytes


def subject_id(what: str, name) -> str:
    """``name`` as a subject's id in the live service: one file name that is also one MQTT topic level.

    One file name (:func:`path_segment`: their recording is ``SESSION_<id>.mot``), one MQTT topic level
    (``kinestream/<id>/angles``: no ``+`` or ``#``), at most SUBJECT_ID_CHARS characters.
    """
    text = path_segment(what, name)
    if any(c in "+#" for c in text) or len(text) > SUBJECT_ID_CHARS:
        raise InputError(
            f"{what} {name!r} is not valid; it must be one MQTT topic level too (without '+' or '#'), at most "
            f"{SUBJECT_ID_CHARS} characters",
            key=what,
            given=name,
            valid=f"one MQTT topic level of at most {SUBJECT_ID_CHARS} characters",
        )
    return text
