"""Conveyor's Prefect tasks, one module per concern."""
