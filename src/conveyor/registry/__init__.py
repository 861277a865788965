"""The model registry: numbered, immutable versions; ``store`` reads them with no ML library, ``register`` writes."""
