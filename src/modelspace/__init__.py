"""modelspace: which pre-trained vision model transfers best to which task, without labels."""

__version__ = "0.1.0"
