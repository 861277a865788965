"""Wiring: the deployments file and the local stack (server, pools, blocks, workers) that runs it."""
