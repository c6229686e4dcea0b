"""Reports rebuilt by replay: counts over the facts a projection folds from the event log."""
