"""vspan.control."""
