"""What a live session of a trial must equal: `process --streaming` on the service's model, and how far apart."""

from pathlib import Path

import numpy as np

from kinestream.assets import get_assets
from kinestream.files.mot import Motion
from kinestream.offline import process
from kinestream.settings import Settings

TRANSLATIONS = ("pelvis_tx", "pelvis_ty", "pelvis_tz")


def streaming_motion(
    trc, mass: float, height: float, out: Path, settings: Settings | None = None, model=None
) -> Motion:
    """`process --streaming` on ``trc`` for a subject of ``mass`` and ``height``, on ``model`` (default: the generic
    model, unscaled, as serve uses without --model): the angles the service must give for that trial."""
    return process(
        trc, mass, height, out, settings or Settings(), plot=False, streaming=True,
        model=model or get_assets().generic_model,
    ).motion  # fmt: skip


def rotational_worst(recorded: Motion, offline: Motion) -> float:
    """The largest difference (deg) in any rotational coordinate between two motions of the same frames."""
    names = [c for c in offline.names if c not in (*TRANSLATIONS, "rmse_mm")]
    return max(float(np.nanmax(np.abs(recorded.get(c) - offline.get(c)))) for c in names)
