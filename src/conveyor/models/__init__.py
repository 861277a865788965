"""The models: the torch MLP and XGBoost baseline, their training (on Dask when asked), evaluation and tuning."""
