"""Optuna sweeps: the search space, the study's storage and its queue of trials."""
