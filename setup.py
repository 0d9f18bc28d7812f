"""Packages: ``fedguard`` and its bundled plugins, which live in the top-level ``attacks/`` and
``defenses/`` folders of the checkout but install under the project's namespace as
``fedguard.attacks`` and ``fedguard.defenses`` (generic top-level names could collide with other
distributions in a user's environment). Everything else is in ``pyproject.toml``."""

from setuptools import find_packages, setup

PLUGIN_FOLDERS = ("attacks", "defenses")


def plugin_packages(folder: str) -> list[str]:
    return [f"fedguard.{folder}"] + [f"fedguard.{folder}.{p}" for p in find_packages(folder)]


setup(
    packages=find_packages(include=["fedguard", "fedguard.*"])
    + [p for folder in PLUGIN_FOLDERS for p in plugin_packages(folder)],
    package_dir={f"fedguard.{folder}": folder for folder in PLUGIN_FOLDERS},
)
