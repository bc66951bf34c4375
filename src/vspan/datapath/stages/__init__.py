"""vspan.datapath.stages."""
