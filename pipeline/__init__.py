"""Frame sampling, face detection, face crops and the on-disk face cache (the `extract` stage)."""
