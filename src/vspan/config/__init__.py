"""vspan.config."""
