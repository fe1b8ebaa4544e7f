"""pktpath: where packets go inside the Linux kernel, and why they die."""

__version__ = "0.1.0"
