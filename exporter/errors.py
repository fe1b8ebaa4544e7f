"""One error class per layer; the CLI turns each into a one-line message and an exit status.

- ConfigError: the user's input is wrong (file, key, value). Exit status 2.
- KernelError: this host cannot run what was asked (no BTF, no libbpf, no
  privilege, a program the kernel refused). Exit status 1.
Anything else escaping to the CLI is a bug and keeps its traceback.
"""


class PktpathError(Exception):
    """Base of every error pktpath reports to a user without a traceback."""

    exit_status = 1


class ConfigError(PktpathError):
    """Bad input: names what is wrong and where (file, key path, line)."""

    exit_status = 2


class KernelError(PktpathError):
    """The kernel or host cannot do what was asked."""

    exit_status = 1
