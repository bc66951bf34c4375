"""The distributed switch's control plane: store layout, apply, per-host compile, host agent."""
