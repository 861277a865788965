"""Conveyor's flows, one module per flow, and the `conveyor` command line."""
