"""Small programs that use kinestream from the outside, shipped with the package: run them with ``python -m``.

python -m kinestream.examples.subscriber zmq    the angles and rep events of a running service
"""
