import sys

from kinestream.commands.main import main

sys.exit(main())
