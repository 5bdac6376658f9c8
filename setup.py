"""The rule sets live in the top-level rules/ folder and ship as the package transplant.ruledata.

The build also places ``transplant-auto.pth`` at the root of site-packages: with
``TRANSPLANT_AUTO=1`` in the environment every Python process (children included) then arms
auto mode at start-up (``transplant/auto/__init__.py``; nothing is imported without the variable).
"""

from pathlib import Path

from setuptools import find_namespace_packages, setup
from setuptools.command.build_py import build_py

# One line, run by Python's site module at every interpreter start-up; it costs nothing unless
# TRANSPLANT_AUTO=1, and even then only arms a post-import hook (torch is not imported here).
AUTO_PTH_NAME = "transplant-auto.pth"
AUTO_PTH_LINE = 'import os; os.environ.get("TRANSPLANT_AUTO") == "1" and __import__("transplant.auto")\n'


class BuildPyWithAutoPth(build_py):
    """build_py that also ships transplant-auto.pth next to the packages (wheels and editable installs)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            # editable_wheel builds the wheel from the install command's lib dir, not build_lib
            target_dir = Path(self.get_finalized_command("install").install_lib)
        else:
            target_dir = Path(self.build_lib)
        target_dir.mkdir(parents=True, exist_ok=True)
        (target_dir / AUTO_PTH_NAME).write_text(AUTO_PTH_LINE, encoding="utf-8")

    def get_outputs(self, include_bytecode=True):
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs.append(str(Path(self.build_lib) / AUTO_PTH_NAME))
        return outputs


setup(
    # Namespace discovery: the data folders (transplant/data, emulate/native) are packages too, so that
    # setuptools ships them without its "package would be ignored" warning.
    packages=find_namespace_packages(include=["transplant", "transplant.*"], exclude=["*.__pycache__"]) + ["transplant.ruledata"],
    package_dir={"transplant.ruledata": "rules"},
    cmdclass={"build_py": BuildPyWithAutoPth},
)
