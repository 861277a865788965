"""The data: landed partitions, content-addressed snapshots, the data store, quarantine and the synthetic generator."""
