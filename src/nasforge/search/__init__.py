"""The search loop shared by every method."""

from .loop import SearchOutcome, run_search

__all__ = ["run_search", "SearchOutcome"]
