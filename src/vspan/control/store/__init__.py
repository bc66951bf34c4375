"""Key-value stores for the distributed switch's desired state (etcd; an in-process fake)."""
