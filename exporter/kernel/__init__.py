"""The kernel side, as the rest of the agent sees it.

`api.py` is the interface: protocols of the handles the agent's stages use (maps, the event ring,
attach control) and plain data about probes; it imports nothing that talks to the kernel, so the
stages above it (decoders, paths, metrics, traces, the interactive tracer) are tested with
in-memory fakes (tests/fakes.py).  `facade.py` implements it over the loader's engine: the one
place besides exporter/loader that uses libbpf, and the one place map names are spelled.
"""
