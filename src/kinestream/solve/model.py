"""The model IK works on and what it is given.

An OpenSim model made ready for IK (:func:`load_model`: markers attached, the joint-centre markers put on their joints,
what IK does not need stripped), its coordinates, the markers as OpenSim's tables, weights and references, and how far a
fit leaves them (:func:`marker_error_mm`). See :mod:`kinestream.solve`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from kinestream.config import DEFAULTS
from kinestream.errors import AssetError, SettingsError
from kinestream.files.trc import MarkerTable
from kinestream.osim import opensim_module, read_model
from kinestream.solve.setup import IKSetup


def attach_markers(
    model, marker_set: str | Path, joint_centre_markers=tuple(DEFAULTS["scale"]["joint_centre_markers"])
) -> None:
    """Add the markers of an OpenSim MarkerSet file to ``model`` (replacing same-named ones), as scaling puts them.

    The pairs of ``joint_centre_markers`` are put on the joint centres they define (:func:`register_joint_centres`), so
    that a generic model and a scaled one hold the same anatomy.
    """
    osim = opensim_module()
    marker_set = Path(marker_set)
    if not marker_set.is_file():
        raise AssetError(
            f"marker set {marker_set} does not exist; give an OpenSim MarkerSet .xml file",
            given=marker_set,
            valid="an OpenSim MarkerSet .xml file",
        )
    markers = osim.MarkerSet(str(marker_set))
    existing = model.updMarkerSet()
    for i in range(markers.getSize()):
        marker = markers.get(i)
        parent = marker.getSocket("parent_frame").getConnecteePath()
        body = parent.rsplit("/", 1)[-1]
        if not model.getBodySet().contains(body) and body != "ground":
            continue
        idx = existing.getIndex(marker.getName())
        if idx >= 0:
            existing.remove(idx)
        model.addMarker(marker.clone())
    model.finalizeConnections()
    register_joint_centres(model, model.initSystem(), joint_centre_markers)


def _pair(spec: str) -> tuple[str, str]:
    names = str(spec).split()
    if len(names) != 2:
        raise SettingsError(
            f"joint_centre_markers entry {spec!r} is not valid; give two marker names separated by a space, "
            f'e.g. "r_ankle_study r_mankle_study"',
            key="scale.joint_centre_markers",
            given=spec,
            valid="two marker names separated by a space",
        )
    return names[0], names[1]


def register_joint_centres(model, state, pairs) -> list[str]:
    """Put each pair of markers that straddles a joint onto that joint's centre; returns what was moved.

    ``pairs`` are "A B" marker names on one body of ``model`` (the lateral and medial malleolus on the tibia,
    say). Both markers move by the same offset, so that their midpoint lands on the nearest centre of a joint
    to a body distal to theirs (the ankle, for the tibia); their separation is kept. Lab protocols define the
    ankle and knee joint centres so, as midpoints of the malleoli and epicondyles, and the augmenter predicts
    its markers where such protocols put them. Pairs the model lacks are passed over. ``state`` is the model's
    default pose (``initSystem``); the markers are changed in place and the system must be initialised again.
    """
    osim = opensim_module()
    markers = model.updMarkerSet()
    notes: list[str] = []
    joints = model.getJointSet()
    for spec in pairs:
        a, b = _pair(spec)
        if not (markers.contains(a) and markers.contains(b)):
            continue
        ma, mb = markers.get(a), markers.get(b)
        body = ma.getParentFrame().findBaseFrame()
        if mb.getParentFrame().findBaseFrame().getAbsolutePathString() != body.getAbsolutePathString():
            raise SettingsError(
                f"joint_centre_markers {a} and {b} sit on different bodies "
                f"({ma.getParentFrameName()}, {mb.getParentFrameName()}); a pair must straddle one joint of one body",
                key="scale.joint_centre_markers",
                given=(a, b),
                valid="a pair on one body",
            )
        mid = (ma.findLocationInFrame(state, body).to_numpy() + mb.findLocationInFrame(state, body).to_numpy()) / 2
        centres = []
        for i in range(joints.getSize()):
            joint = joints.get(i)
            parent = joint.getParentFrame()
            if parent.findBaseFrame().getAbsolutePathString() == body.getAbsolutePathString():
                centre = parent.findStationLocationInAnotherFrame(state, osim.Vec3(0.0, 0.0, 0.0), body).to_numpy()
                centres.append((float(np.linalg.norm(centre - mid)), joint.getName(), centre))
        if not centres:
            raise SettingsError(
                f"joint_centre_markers {a} and {b} sit on {body.getName()}, which no joint leaves; "
                f"name a pair that straddles a joint to a distal body",
                key="scale.joint_centre_markers",
                given=(a, b),
                valid="a pair that straddles a joint",
            )
        distance, joint_name, centre = min(centres, key=lambda c: c[0])
        shift = centre - mid
        for marker in (ma, mb):  # a marker's frame may be an offset frame of the body: move it in its axes
            offset = body.expressVectorInAnotherFrame(state, osim.Vec3(*shift), marker.getParentFrame()).to_numpy()
            marker.set_location(osim.Vec3(*(marker.get_location().to_numpy() + offset)))
        notes.append(f"{a} and {b} onto the centre of {joint_name} ({distance * 1000:.0f} mm)")
    return notes


def strip_for_ik(model) -> list[str]:
    """Remove what IK does not need and what slows it down; returns what was removed.

    Forces (muscles, ligaments) play no part in IK. Patellae that OpenCap's
    models (LaiUhlrich2022, LaiArnoldModified2017) couple to the knee angle by
    constraints make every IK frame an order of magnitude slower; as OpenCap
    does before IK, their bodies, joints and constraints go, and the knee
    angle is unchanged.
    """
    osim = opensim_module()
    removed: list[str] = []
    forces = model.updForceSet()
    if forces.getSize():
        removed.append(f"{forces.getSize()} forces")
        forces.clearAndDestroy()
    bodies = model.updBodySet()
    patellae = [
        bodies.get(i).getName() for i in range(bodies.getSize()) if "patella" in bodies.get(i).getName().lower()
    ]
    if patellae:
        joints = model.updJointSet()
        dropped_coords = set()
        for i in reversed(range(joints.getSize())):
            joint = joints.get(i)
            child = joint.getChildFrame().findBaseFrame().getName()
            if child in patellae:
                for c in range(joint.numCoordinates()):
                    dropped_coords.add(joint.get_coordinates(c).getName())
                removed.append(f"joint {joint.getName()}")
                joints.remove(i)
        constraints = model.updConstraintSet()
        for i in reversed(range(constraints.getSize())):
            con = constraints.get(i)
            coupled = set()
            coupler = osim.CoordinateCouplerConstraint.safeDownCast(con)
            if coupler is not None:
                independent = coupler.getIndependentCoordinateNames()
                coupled = {coupler.getDependentCoordinateName()}
                coupled |= {independent.get(k) for k in range(independent.getSize())}
            if "patell" in con.getName().lower() or coupled & dropped_coords:
                removed.append(f"constraint {con.getName()}")
                constraints.remove(i)
        markers = model.updMarkerSet()
        for i in reversed(range(markers.getSize())):
            if markers.get(i).getParentFrameName().rsplit("/", 1)[-1] in patellae:
                markers.remove(i)
        for name in patellae:
            bodies.remove(bodies.getIndex(name))
            removed.append(f"body {name}")
    model.finalizeConnections()
    return removed


def load_model(path: str | Path, marker_set: str | Path | None = None):
    """An OpenSim model ready for IK, and a list of what was stripped from it.

    ``marker_set`` is attached only when the model carries no markers of its own.
    """
    model = read_model(path)
    if marker_set is not None and model.getMarkerSet().getSize() == 0:
        attach_markers(model, marker_set)
    removed = strip_for_ik(model)
    model.initSystem()
    return model, removed


def coordinate_names(model) -> list[str]:
    """The names of the model's coordinates, in its CoordinateSet's order."""
    cs = model.getCoordinateSet()
    return [cs.get(i).getName() for i in range(cs.getSize())]


def _rotational(model) -> np.ndarray:
    osim = opensim_module()
    cs = model.getCoordinateSet()
    return np.array([cs.get(i).getMotionType() == osim.Coordinate.Rotational for i in range(cs.getSize())])


def vec3_table(names: list[str], times, xyz: np.ndarray):
    """An OpenSim TimeSeriesTableVec3 in metres; ``xyz`` is (frames, len(names), 3), NaN where missing."""
    osim = opensim_module()
    out = osim.TimeSeriesTableVec3()
    # A list, not an osim.StdVectorString: once ezc3d (also SWIG) has made a std::vector<std::string>, the
    # SWIG runtime both share takes OpenSim's proxy of that type for ezc3d's, and the call is refused.
    out.setColumnLabels(list(names))
    for t, frame in zip(times, np.asarray(xyz, dtype=float).tolist(), strict=False):
        row = osim.RowVectorVec3(len(names))
        for j, (x, y, z) in enumerate(frame):
            row[j] = osim.Vec3(x, y, z)
        out.appendRow(float(t), row)
    out.addTableMetaDataString("Units", "m")
    return out


def marker_weights(setup: IKSetup, names: list[str]):
    """OpenSim's weight set for the named markers, weighted as in ``setup``."""
    osim = opensim_module()
    weights = osim.SetMarkerWeights()
    for n in names:
        weights.cloneAndAppend(osim.MarkerWeight(n, setup.marker_weights[n]))
    return weights


def markers_reference(table: MarkerTable, names: list[str], setup: IKSetup):
    """A MarkersReference of the named markers of ``table``, weighted as in ``setup``."""
    osim = opensim_module()
    xyz = table.xyz[:, [table.index(n) for n in names]]
    return osim.MarkersReference(vec3_table(names, table.time, xyz), marker_weights(setup, names))


def coordinate_references(model, setup: IKSetup):
    """The setup's coordinate tasks as OpenSim CoordinateReferences (constant targets)."""
    osim = opensim_module()
    refs = osim.SimTKArrayCoordinateReference()
    cs = model.getCoordinateSet()
    for name, (weight, value) in setup.coordinate_tasks.items():
        if cs.contains(name):
            target = cs.get(name).getDefaultValue() if value is None else value
            ref = osim.CoordinateReference(name, osim.Constant(target))
            ref.setWeight(weight)
            refs.push_back(ref)
    return refs


def marker_error_mm(errors: np.ndarray) -> tuple[float, float]:
    """RMS and largest of per-marker distances (m, NaN for markers not fitted), in mm; NaN when none was fitted."""
    e = np.asarray(errors, dtype=float)
    e = e[np.isfinite(e)]
    if e.size == 0:
        return float("nan"), float("nan")
    return math.sqrt(float(np.mean(e**2))) * 1000, float(e.max()) * 1000
