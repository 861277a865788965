"""The local stack: Prefect server, work pools, workers and watcher as processes; status and job templates."""
