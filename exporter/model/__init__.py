"""The bottom layer: pktpath's data model, the hop table, the names of kernel numbers, and the ABI
mirror of exporter/bpf/pktpath.h.  It imports nothing from the rest of the package but errors."""
