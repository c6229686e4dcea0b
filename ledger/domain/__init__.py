"""The domain: events, aggregates and rules. Pure Python: no Flask, no SQL."""
