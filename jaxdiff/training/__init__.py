"""Training: the loop, its checkpoints and metrics, and the run directories it leaves (`workdirs.TrainedRun`)."""
