"""The truth model, and the generic model's standing height.

The truth model is the generic model scaled uniformly, carrying the anatomical markers and the keypoints
(:func:`truth_model`); the standing height is measured on its meshes (:func:`generic_height`).

Subject. ``height`` is the generic model's standing height times ``scale``:
the vertical distance, with every joint angle at zero, from the lowest vertex
of the foot meshes (calcaneus and toes bodies: the sole) to the highest vertex
of the head meshes (skull and jaw: the top of the head). ``mass`` is the
generic model's total mass times ``scale**3`` (uniform scaling at constant
density); the scaled model carries that mass.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from kinestream import checks
from kinestream.assets import get_assets
from kinestream.config import DEFAULTS
from kinestream.errors import AssetError, SolverError
from kinestream.ingest import BODY_25
from kinestream.osim import opensim_module
from kinestream.solve import register_joint_centres

_FACE = {"REye", "LEye", "REar", "LEar"}
_KEYPOINT_RENAME = {"CHip": "MidHip"}
_FOOT_BODIES = ("calcn_r", "calcn_l", "toes_r", "toes_l")
_HEAD_BODIES = ("head",)


def _marker_lists(assets) -> tuple[list, list]:
    """(anatomical markers, keypoint markers) as OpenSim Marker clones, renamed."""
    osim = opensim_module()
    anatomical = []
    lstm = osim.MarkerSet(str(assets.marker_set))
    for i in range(lstm.getSize()):
        if lstm.get(i).getName().endswith("_study"):
            anatomical.append(lstm.get(i).clone())
    keypoints = []
    body25 = osim.MarkerSet(str(assets.keypoint_marker_set))
    for i in range(body25.getSize()):
        marker = body25.get(i).clone()
        marker.setName(_KEYPOINT_RENAME.get(marker.getName(), marker.getName()))
        keypoints.append(marker)
    order = {name: k for k, name in enumerate(BODY_25)}
    keypoints = [m for m in keypoints if m.getName() in order and m.getName() not in _FACE]
    keypoints.sort(key=lambda m: order[m.getName()])
    return anatomical, keypoints


def truth_model(scale: float = 1.0, assets=None):
    """The generic model, scaled uniformly by ``scale``, with both marker sets.

    Returns ``(model, state, anatomical_names, keypoint_names)``. The model
    holds the 43 ``_study`` markers of Markers_LSTM.xml (the malleoli on the ankle joint centre, as scaling
    puts them: ``[scale] joint_centre_markers``) and the BODY_25
    keypoint markers of Markers_Body25.xml (``CHip`` renamed ``MidHip``; the
    OpenPose-named markers of Markers_LSTM.xml are left out so names stay
    unique). Its total mass is the generic mass times ``scale**3``.
    """
    checks.positive("scale", scale)
    osim = opensim_module()
    assets = assets or get_assets()
    model = osim.Model(str(assets.generic_model))
    anatomical, keypoints = _marker_lists(assets)
    for marker in anatomical + keypoints:
        model.addMarker(marker)
    state = model.initSystem()
    # the anatomical markers where scaling puts them: a pair that defines a joint centre sits on it
    if register_joint_centres(model, state, DEFAULTS["scale"]["joint_centre_markers"]):
        state = model.initSystem()
    generic_mass = model.getTotalMass(state)
    if scale != 1.0:
        factors = osim.ScaleSet()
        bodies = model.getBodySet()
        for i in range(bodies.getSize()):
            factor = osim.Scale()
            factor.setSegmentName(bodies.get(i).getName())
            factor.setScaleFactors(osim.Vec3(scale, scale, scale))
            factor.setApply(True)
            factors.cloneAndAppend(factor)
        if not model.scale(state, factors, True, generic_mass * scale**3):
            raise SolverError(f"OpenSim could not scale the model by {scale}", given=scale)
        state = model.initSystem()
    return model, state, [m.getName() for m in anatomical], [m.getName() for m in keypoints]


def _mesh_vertices(path: Path) -> np.ndarray:
    """Vertices (n, 3) of a VTK PolyData (.vtp) file with ASCII points."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise AssetError(f"cannot read mesh {path} to measure the model's height: {exc}", given=path) from None
    array = root.find("./PolyData/Piece/Points/DataArray")
    if array is None or array.get("format", "ascii") != "ascii":
        raise AssetError(
            f"mesh {path} has no ASCII point list; cannot measure the model's height",
            given=path,
            valid="an ASCII point list",
        )
    return np.array((array.text or "").split(), dtype=float).reshape(-1, 3)


def _body_mesh_points(model, state, body_name: str, geometry_dir: Path) -> np.ndarray:
    """All mesh vertices attached to a body, in ground coordinates."""
    osim = opensim_module()
    body = model.getBodySet().get(body_name)
    origin = body.findStationLocationInGround(state, osim.Vec3(0, 0, 0)).to_numpy()
    rot = np.column_stack(
        [body.findStationLocationInGround(state, osim.Vec3(*e)).to_numpy() - origin for e in np.eye(3)]
    )
    points = []
    n_geometry = body.getPropertyByName("attached_geometry").size()
    for i in range(n_geometry):
        mesh = osim.Mesh.safeDownCast(body.get_attached_geometry(i))
        if mesh is None:
            continue
        local = _mesh_vertices(geometry_dir / mesh.get_mesh_file()) * mesh.get_scale_factors().to_numpy()
        points.append(origin + local @ rot.T)
    if not points:
        raise AssetError(f"body {body_name!r} carries no mesh; cannot measure the model's height", given=body_name)
    return np.vstack(points)


@functools.lru_cache(maxsize=4)
def generic_height(model_path: str, geometry_dir: str) -> float:
    """Standing height (m) of a generic model: sole to top of head, all joint angles zero.

    The sole is the lowest vertex of the meshes on the calcaneus and toe
    bodies, the top of the head the highest vertex of the head's meshes.
    """
    osim = opensim_module()
    model = osim.Model(model_path)
    state = model.initSystem()
    coords = model.getCoordinateSet()
    for i in range(coords.getSize()):
        if coords.get(i).getMotionType() == 1:  # rotational
            coords.get(i).setValue(state, 0.0, False)
    model.realizePosition(state)
    geometry = Path(geometry_dir)
    top = max(_body_mesh_points(model, state, b, geometry)[:, 1].max() for b in _HEAD_BODIES)
    sole = min(_body_mesh_points(model, state, b, geometry)[:, 1].min() for b in _FOOT_BODIES)
    return float(top - sole)
