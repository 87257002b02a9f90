"""The live path: the keypoint stream in, angles out (the asyncio shell and its sockets)."""
