"""vspan.capture."""
