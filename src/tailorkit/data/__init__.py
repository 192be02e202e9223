"""Data: reading tables, checking and splitting, tokenising and batching."""
