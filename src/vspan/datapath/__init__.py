"""vspan.datapath."""
