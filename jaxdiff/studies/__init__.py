"""Studies of many runs: the main job (one run end to end), the sweep and its summary, the frontier, the probes and the arms study with its analysis."""
