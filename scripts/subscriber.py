#!/usr/bin/env python
"""The example subscriber, which ships inside the package: ``python -m kinestream.examples.subscriber``.

.venv/bin/python scripts/subscriber.py zmq [tcp://127.0.0.1:5556]
.venv/bin/python scripts/subscriber.py mqtt [127.0.0.1:1883] [--subject subject]
"""

from kinestream.examples.subscriber import main

if __name__ == "__main__":
    main()
