"""kdbench's built-in datasets, models and teacher providers, registered as a plugin."""
