"""``python -m kinestream``: the ``kinestream`` command (:func:`kinestream.commands.main.main`)."""

import sys

from kinestream.commands.main import main

sys.exit(main())
