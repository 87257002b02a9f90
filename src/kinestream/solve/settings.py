"""The ``[ik]`` section of the config (:class:`IKSettings`).

It reads an IK setup file with its settings applied and builds the frame-wise core, so that the live service and the
offline recipe build IK the same way. See :mod:`kinestream.solve`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from kinestream.augment import UPPER_MARKERS
from kinestream.config import Section
from kinestream.solve.setup import _IK, IKSetup, read_ik_setup
from kinestream.solve.stream import StreamingIK


@dataclass(frozen=True)
class IKSettings(Section):
    """How IK runs; the ``[ik]`` section of the config (default.toml documents each setting).

    :meth:`setup` reads an IK setup file with these settings applied, and
    :meth:`streaming` builds the frame-wise core, so that the live service
    and the offline recipe build IK the same way.
    """

    SECTION: ClassVar[str] = "ik"

    solver: str = _IK["solver"]
    accuracy: float = _IK["accuracy"]
    tolerance: float = _IK["tolerance"]  # the fast solver stops when a step would gain less than this share of F
    constraint_weight: float | str = _IK["constraint_weight"]  # a weight, or "inf": enforced exactly
    coordinate_tasks: bool = _IK["coordinate_tasks"]
    arms: bool = _IK["arms"]
    min_markers: int = _IK["min_markers"]
    outlier_mm: float = _IK["outlier_mm"]
    reassemble_mm: float = _IK["reassemble_mm"]

    def setup(self, ik_setup: str | Path) -> IKSetup:
        """The IK setup file's marker weights (no arm markers when ``arms`` is off).

        With this accuracy and constraint weight.
        """
        setup = read_ik_setup(ik_setup, coordinate_tasks=bool(self.coordinate_tasks))
        setup.accuracy = float(self.accuracy)
        cw = self.constraint_weight
        setup.constraint_weight = math.inf if str(cw).lower() == "inf" else float(cw)
        if not self.arms:
            setup.marker_weights = {k: v for k, v in setup.marker_weights.items() if k not in UPPER_MARKERS}
        return setup

    def streaming(self, model, setup: IKSetup, names: list[str], like: StreamingIK | None = None) -> StreamingIK:
        """The frame-wise IK core for markers ``names`` with these settings (``like``: see :class:`StreamingIK`)."""
        return StreamingIK(
            model,
            setup,
            names,
            like=like,
            min_markers=int(self.min_markers),
            reassemble_mm=float(self.reassemble_mm),
            outlier_mm=float(self.outlier_mm),
            solver=str(self.solver),
            tolerance=float(self.tolerance),
        )
