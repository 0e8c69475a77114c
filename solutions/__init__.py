"""Reference implementations, one module per chapter."""
