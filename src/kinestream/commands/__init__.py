"""The command layer: ``kinestream COMMAND``, one module per group of commands, and the only code that prints.

``main`` (in :mod:`kinestream.commands.main`) parses the command line; each module adds its commands'
parsers and runs them: ``trial`` (assets, synth, augment, scale, ik, process), ``live`` (serve, calibrate,
keys), ``replay``, ``reps``, ``recover`` and ``demo``; ``terminal`` draws the live status line.
"""
