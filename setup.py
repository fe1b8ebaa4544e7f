"""Build hook: compile the BPF CO-RE objects so `pip install .` and wheels ship them.

Everything else about the package lives in pyproject.toml.
"""

import os
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithBpf(build_py):
    def run(self) -> None:
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run(["make", "-C", os.path.join(here, "exporter", "bpf")], check=True)
        super().run()


setup(cmdclass={"build_py": BuildWithBpf})
