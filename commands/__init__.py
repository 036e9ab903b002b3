"""The command groups of cli.py, one module per area."""
