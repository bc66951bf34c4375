"""vspan.mirror."""
