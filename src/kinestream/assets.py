"""The trained augmenter and the OpenSim model, fetched from the pose2sim wheel.

kinestream commits none of these files. On first use it downloads the
pose2sim wheel from PyPI by exact version (without its dependencies), checks
its sha256, and extracts what the pipeline needs into a cache folder:
``$KINESTREAM_HOME`` when set, else ``$XDG_CACHE_HOME/kinestream`` or
``~/.cache/kinestream``. A user's own files named in the config take
precedence over the cached ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from kinestream.errors import AssetError
from kinestream.settings import Settings

try:  # the cache's lock: one process at a time installs the assets
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

WHEEL_NAME = "pose2sim"
WHEEL_VERSION = "0.10.49"
WHEEL_SHA256 = "403e0dc4065898ba6a595e72a8970950310979253d60e24c2e00b16b36bf21e1"
WHEEL_FILE = f"pose2sim-{WHEEL_VERSION}-py3-none-any.whl"

# Paths inside the wheel -> paths inside the cache folder.
_LSTM = "Pose2Sim/MarkerAugmenter/LSTM"
_SETUP = "Pose2Sim/OpenSim_Setup"
_FILES = {
    **{
        f"{_LSTM}/v0.3_{part}/{name}": f"augmenter/v0.3_{part}/{name}"
        for part in ("lower", "upper")
        for name in ("model.onnx", "mean.npy", "std.npy")
    },
    f"{_SETUP}/Model_Pose2Sim_simple.osim": "opensim/Model_Pose2Sim_simple.osim",
    f"{_SETUP}/Markers_LSTM.xml": "opensim/Markers_LSTM.xml",
    f"{_SETUP}/Markers_Body25.xml": "opensim/Markers_Body25.xml",
    f"{_SETUP}/Scaling_Setup_Pose2Sim_LSTM.xml": "opensim/Scaling_Setup_Pose2Sim_LSTM.xml",
    f"{_SETUP}/IK_Setup_Pose2Sim_withoutHands_LSTM.xml": "opensim/IK_Setup_Pose2Sim_withoutHands_LSTM.xml",
}
_GEOMETRY = f"{_SETUP}/Geometry/"
_STAMP = ".complete"


@dataclass(frozen=True)
class Assets:
    """Paths of everything the pipeline reads besides the user's data."""

    lower_model: Path
    upper_model: Path
    generic_model: Path
    marker_set: Path
    keypoint_marker_set: Path
    scale_setup: Path
    ik_setup: Path
    geometry: Path

    @property
    def lower_dir(self) -> Path:
        """The folder of the lower-body augmenter model."""
        return self.lower_model.parent

    @property
    def upper_dir(self) -> Path:
        """The folder of the upper-body augmenter model."""
        return self.upper_model.parent


def home() -> Path:
    """The cache folder that holds the extracted assets."""
    env = os.environ.get("KINESTREAM_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kinestream"


def asset_dir() -> Path:
    """The folder the pose2sim wheel's assets are extracted to, in :func:`home`, named by the wheel's version."""
    return home() / f"{WHEEL_NAME}-{WHEEL_VERSION}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download_with_pip(dest: Path) -> Path | None:
    """The assets' wheel downloaded into ``dest`` by pip (None when that fails).

    pip honours the machine's index, mirrors and certificates.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(dest),
        f"{WHEEL_NAME}=={WHEEL_VERSION}",
    ]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    except (OSError, subprocess.SubprocessError):
        return None
    wheel = dest / WHEEL_FILE
    return wheel if wheel.is_file() else None


def _download_from_pypi(dest: Path) -> Path | None:
    """Fallback without pip: PyPI's JSON API names the wheel's URL."""
    try:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{WHEEL_NAME}/{WHEEL_VERSION}/json", timeout=60) as r:
            meta = json.load(r)
        url = next(f["url"] for f in meta["urls"] if f["filename"] == WHEEL_FILE)
        wheel = dest / WHEEL_FILE
        with urllib.request.urlopen(url, timeout=600) as r, open(wheel, "wb") as fh:
            shutil.copyfileobj(r, fh)
        return wheel
    except Exception:
        return None


@contextlib.contextmanager
def _cache_lock():
    """The cache's lock: one process at a time downloads or installs the assets.

    It is ``.lock`` in :func:`home` (fcntl.flock); the others wait, then find them complete.
    """
    home().mkdir(parents=True, exist_ok=True)
    fd = os.open(home() / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def fetch() -> Path:
    """Download, verify and extract the assets unless they are cached already (a download is logged at INFO).

    Safe to call again: it returns at once when the cache is complete. Safe
    to call from many processes at once (batch workers on a fresh cache): one
    downloads under the cache's lock, the others wait for it and use its copy.
    """
    target = asset_dir()
    if (target / _STAMP).is_file():
        return target
    with _cache_lock():
        if (target / _STAMP).is_file():  # another process fetched them while this one waited
            return target
        with tempfile.TemporaryDirectory(dir=home()) as tmp_name:
            tmp = Path(tmp_name)
            log.info("kinestream: fetching %s from PyPI into %s", WHEEL_FILE, target)
            wheel = _download_with_pip(tmp) or _download_from_pypi(tmp)
            if wheel is None:
                raise AssetError(
                    f"could not download {WHEEL_NAME}=={WHEEL_VERSION} from PyPI (no network?); connect and run "
                    f"'kinestream assets' again, or download {WHEEL_FILE} yourself and run "
                    f"'kinestream assets --wheel PATH'",
                    given=WHEEL_FILE,
                    valid="'kinestream assets --wheel PATH'",
                )
            return _install(wheel)


def install_wheel(wheel: str | Path) -> Path:
    """Verify a downloaded wheel and extract the assets from it into the cache.

    Under the cache's lock; complete assets already there are kept as they are (a process may be reading
    them), an incomplete folder is replaced.
    """
    with _cache_lock():
        return _install(Path(wheel))


def _install(wheel: Path) -> Path:
    """install_wheel's work, the cache's lock held."""
    if not wheel.is_file():
        raise AssetError(
            f"wheel {wheel} does not exist; give the path of {WHEEL_FILE}", key="--wheel", given=wheel, valid=WHEEL_FILE
        )
    digest = _sha256(wheel)
    if digest != WHEEL_SHA256:
        raise AssetError(
            f"checksum mismatch for {wheel}: sha256 {digest}, expected {WHEEL_SHA256}; "
            f"delete it and run 'kinestream assets' to download {WHEEL_FILE} again",
            given=digest,
            valid=WHEEL_SHA256,
        )
    target = asset_dir()
    if (target / _STAMP).is_file():  # complete: another process installed them; never removed from under a reader
        return target
    staging = Path(tempfile.mkdtemp(dir=home(), prefix=".extract-"))
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            missing = [src for src in _FILES if src not in names]
            if missing:
                raise AssetError(
                    f"{wheel} lacks {missing}; it is not the expected {WHEEL_FILE}", given=wheel, valid=WHEEL_FILE
                )
            for src, dst in _FILES.items():
                out = staging / dst
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(zf.read(src))
            for src in names:
                if src.startswith(_GEOMETRY) and not src.endswith("/"):
                    out = staging / "opensim" / "Geometry" / src[len(_GEOMETRY) :]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(zf.read(src))
        (staging / _STAMP).write_text(f"{WHEEL_FILE} {WHEEL_SHA256}\n")
        if target.exists():  # an incomplete folder (an install killed half way): moved off, then removed
            stale = Path(tempfile.mkdtemp(dir=home(), prefix=".stale-"))
            target.rename(stale / target.name)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            staging.rename(target)  # atomic; refused when the folder is there again
        except OSError:
            if not (target / _STAMP).is_file():  # not another process's complete copy (one without the lock)
                raise AssetError(
                    f"cannot install the assets into {target}; remove it and run again",
                    given=target,
                    valid="remove it and run again",
                ) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _pick(configured: str | os.PathLike | None, default: Path, what: str) -> Path:
    if configured:
        path = Path(configured).expanduser()
        if not path.exists():
            raise AssetError(
                f"{what} {path} (from the config) does not exist; fix the path or leave it "
                f"empty to use the default from {WHEEL_FILE}",
                key=what,
                given=path,
                valid="an existing path, or empty for the default",
            )
        return path
    return default


def get_assets(settings: Settings | None = None) -> Assets:
    """Paths of the assets, fetching them on first use; the ``[augment]`` and ``[model]`` paths given override."""
    settings = settings or Settings()
    aug, mod = settings.augment, settings.model
    need_cache = not all(
        [aug.lower_model, aug.upper_model, mod.generic_model, mod.marker_set, mod.scale_setup, mod.ik_setup]
    )
    root = fetch() if need_cache else asset_dir()
    osim_dir = root / "opensim"
    return Assets(
        lower_model=_pick(aug.lower_model, root / "augmenter/v0.3_lower/model.onnx", "lower-body augmenter"),
        upper_model=_pick(aug.upper_model, root / "augmenter/v0.3_upper/model.onnx", "upper-body augmenter"),
        generic_model=_pick(mod.generic_model, osim_dir / "Model_Pose2Sim_simple.osim", "model"),
        marker_set=_pick(mod.marker_set, osim_dir / "Markers_LSTM.xml", "marker set"),
        keypoint_marker_set=osim_dir / "Markers_Body25.xml",
        scale_setup=_pick(mod.scale_setup, osim_dir / "Scaling_Setup_Pose2Sim_LSTM.xml", "scaling setup"),
        ik_setup=_pick(mod.ik_setup, osim_dir / "IK_Setup_Pose2Sim_withoutHands_LSTM.xml", "IK setup"),
        geometry=osim_dir / "Geometry",
    )
