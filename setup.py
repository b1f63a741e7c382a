"""Build step that pyproject.toml cannot say: compile the sandbox-runc dispatcher.

sandbox-runc runs on every container operation, so it is a small C program (csrc/sandbox-runc.c)
where a C compiler is found at install time; elsewhere the POSIX sh twin (bin/sandbox-runc) is
installed instead, which decides alike but costs one shell start per call and never uses the
daemon.  Everything else is in pyproject.toml.
"""

import os
import shlex
import subprocess
import sys

from setuptools import Distribution, setup

# setuptools has no build_scripts of its own; importing setuptools first makes this its copy
from distutils.command.build_scripts import build_scripts  # noqa: E402  # isort: skip

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildScripts(build_scripts):
    def run(self) -> None:
        super().run()  # copies bin/sandbox-runc and bin/sandbox-nethook (the sh twins) into place first
        if os.environ.get("SANDBOX_NO_C_DISPATCHER"):
            return
        # static where libc.a is installed: no dynamic loader on every runc call (≈ 0.5 ms, 1.18× → 1.10×
        # of `runc state` here)
        self.compile("sandbox-runc", (["-static"], []))
        # the network hook dlopen()s libnftables: dynamic
        self.compile("sandbox-nethook", ([],))

    def compile(self, name: str, variants: tuple[list[str], ...]) -> None:
        src = os.path.join(HERE, "csrc", f"{name}.c")
        out = os.path.join(self.build_dir, name)
        cc = shlex.split(os.environ.get("CC") or "cc")
        tmp = out + ".tmp"
        for flags in variants:
            try:
                subprocess.run([*cc, "-O2", "-Wall", *flags, "-o", tmp, src], check=True)
                break
            except (OSError, subprocess.CalledProcessError) as e:
                err = e
        else:
            sys.stderr.write(f"warning: cannot compile {src} ({err}); installing its sh twin instead\n")
            return
        os.chmod(tmp, 0o755)  # noqa: S103 - an installed program, as setuptools installs scripts
        os.replace(tmp, out)


class BinaryDistribution(Distribution):
    def has_ext_modules(self) -> bool:
        return True  # the wheel carries a compiled program: tag it for this platform


setup(cmdclass={"build_scripts": BuildScripts}, distclass=BinaryDistribution)
