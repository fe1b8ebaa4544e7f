"""Build hook: compile the BPF CO-RE objects so `pip install .` and wheels ship them.

Everything else about the package lives in pyproject.toml.
"""

import os
import subprocess

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py


class BinaryDistribution(Distribution):
    """The wheel carries BPF objects built for one architecture (-D__TARGET_ARCH_x86 ...):
    tag it with the platform so pip never installs it on another."""

    def has_ext_modules(self) -> bool:
        return True


class BuildWithBpf(build_py):
    def run(self) -> None:
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run(["make", "-C", os.path.join(here, "exporter", "bpf")], check=True)
        super().run()


setup(cmdclass={"build_py": BuildWithBpf}, distclass=BinaryDistribution)
