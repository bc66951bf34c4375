"""vspan.packet."""
