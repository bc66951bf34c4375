"""vspan.analysis."""
