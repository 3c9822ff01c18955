"""Measured accuracy of sub-nets: the accuracy table (measured top-1 per checkpoint, dataset,
split and config, on the shared database base), the accuracy predictor fitted on it, the
predicted static front and the predictor-guided static search."""
