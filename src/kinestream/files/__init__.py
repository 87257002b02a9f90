"""Files the field reads: OpenSim .trc and .mot, and crash-safe live recordings of both."""
