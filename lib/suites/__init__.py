"""Probe suites: suite files and the stored suites (`definitions`), runs with one worker each
(`runner`) and their results (`results`)."""
