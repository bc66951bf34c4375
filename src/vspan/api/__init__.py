"""vspan.api."""
