"""Configuration types: pydantic settings and the Prefect blocks Conveyor registers."""
