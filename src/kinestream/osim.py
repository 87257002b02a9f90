"""Import OpenSim once, quietly: warnings only, no opensim.log in the working folder.

The cached model geometry is on the search path (else every model load from another folder warns about each missing
mesh). This module is the one place the package imports ``opensim``, and only when a model is first needed: the
commands that use no model (``--help``, ``config``, ``replay``, ...) start without loading it.
"""

from __future__ import annotations

from kinestream.assets import asset_dir
from kinestream.errors import InputError, SolverError

_configured = False


def opensim_module():
    """The ``opensim`` module with its logger set for a command-line tool."""
    global _configured
    import opensim  # heavy: loaded with the first model, here only

    if not _configured:
        opensim.Logger.removeFileSink()
        opensim.Logger.setLevelString("warn")
        geometry = asset_dir() / "opensim" / "Geometry"
        if geometry.is_dir():
            opensim.ModelVisualizer.addDirToGeometrySearchPaths(str(geometry))
        _configured = True
    return opensim


def read_model(path):
    """The OpenSim model in the .osim file at ``path``; a clear error when it is missing or not a model."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"model {path} does not exist; give an OpenSim .osim file (the scaled model "
            f"'kinestream scale' or 'calibrate' writes)",
            given=path,
            valid="an OpenSim .osim file",
        )
    try:
        return opensim_module().Model(str(path))
    except Exception as exc:
        raise SolverError(f"{path} could not be loaded as an OpenSim model: {exc}", given=path) from None
