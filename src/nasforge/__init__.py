"""nasforge: neural architecture search, from search to a retrained, reported network."""

__version__ = "0.1.0"
