"""vspan.ports."""
