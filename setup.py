"""The rule sets live in the top-level rules/ folder and ship as the package transplant.ruledata."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["transplant", "transplant.*"]) + ["transplant.ruledata"],
    package_dir={"transplant.ruledata": "rules"},
)
