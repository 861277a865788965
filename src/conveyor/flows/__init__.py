"""The flows: thin, typed wiring of the domain tasks (refit, validate, train, tune, edge-check, the watcher)."""
