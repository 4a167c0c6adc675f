"""Package discovery for otel-llm.

The design card keeps ``collectors/``, ``processors/``, ``exporters/``,
``dashboards/`` and ``alert_rules/`` as top-level folders, but everything
imports as ``otel_llm.*``: no generic top-level module names are installed.
This file maps each folder onto its ``otel_llm`` sub-package (wheel and
editable installs alike); all other metadata is in ``pyproject.toml``.
"""

from setuptools import find_packages, setup

FOLDERS = {
    "collectors": "otel_llm.collectors",
    "processors": "otel_llm.processors",
    "exporters": "otel_llm.exporters",
    "dashboards": "otel_llm.dashboards",
    "alert_rules": "otel_llm.alert_rules",
}

packages = find_packages(include=["otel_llm", "otel_llm.*"])
package_dir = {"otel_llm": "otel_llm"}
for folder, name in FOLDERS.items():
    package_dir[name] = folder
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=package_dir)
