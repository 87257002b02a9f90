import sys

from kinestream.commands import main

sys.exit(main())
