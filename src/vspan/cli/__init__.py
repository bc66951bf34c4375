"""vspan.cli."""
