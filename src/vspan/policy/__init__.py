"""vspan.policy."""
