"""Import OpenSim once, quietly: warnings only, and no opensim.log in the working folder."""

from __future__ import annotations

import opensim

_configured = False


def opensim_module():
    """The ``opensim`` module with its logger set for a command-line tool."""
    global _configured
    if not _configured:
        opensim.Logger.removeFileSink()
        opensim.Logger.setLevelString("warn")
        _configured = True
    return opensim
