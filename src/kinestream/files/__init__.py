"""Files the field reads: OpenSim .trc and .mot, the motion labs' .c3d, and crash-safe live recordings."""
