"""kdbench's built-in distillation methods, one module per paper, registered as a plugin."""
