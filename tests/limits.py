"""Readers run in a process of their own under a memory limit: a reader that allocates what a header claims
ends in MemoryError there, without taking gigabytes from the machine the tests run on."""

from __future__ import annotations

import subprocess
import sys

# a reader in a process of its own whose address space may grow by 512 MB past what its imports took: a reader
# that allocates what a header claims ends in MemoryError there (exit 1); a refusal is one line (exit 2)
_LIMITED = """
import resource, sys
from kinestream.errors import KinestreamError
from kinestream.files.c3d import trc_to_c3d
from kinestream.files.trc import read_trc
with open("/proc/self/status") as fh:
    size = 1024 * int(next(line for line in fh if line.startswith("VmSize:")).split()[1])
resource.setrlimit(resource.RLIMIT_AS, (size + 512 * 2**20, resource.RLIM_INFINITY))
try:
    read_trc(sys.argv[1]) if sys.argv[2] == "trc" else trc_to_c3d(sys.argv[1])
except KinestreamError as exc:
    print(exc)
    sys.exit(2)
"""


def read_limited(path, what: str = "trc"):
    """Exit status and output of reading ``path`` (``what``: "trc" for read_trc, "c3d" for trc_to_c3d) under the
    limit."""
    done = subprocess.run(
        [sys.executable, "-c", _LIMITED, str(path), what], capture_output=True, text=True, timeout=300
    )
    return done.returncode, done.stdout + done.stderr
