"""Import OpenSim once, quietly: warnings only, no opensim.log in the working folder,
and the cached model geometry on the search path (else every model load from
another folder warns about each missing mesh)."""

from __future__ import annotations

import opensim

_configured = False


def opensim_module():
    """The ``opensim`` module with its logger set for a command-line tool."""
    global _configured
    if not _configured:
        opensim.Logger.removeFileSink()
        opensim.Logger.setLevelString("warn")
        from .assets import asset_dir

        geometry = asset_dir() / "opensim" / "Geometry"
        if geometry.is_dir():
            opensim.ModelVisualizer.addDirToGeometrySearchPaths(str(geometry))
        _configured = True
    return opensim
