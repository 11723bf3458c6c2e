"""Package discovery for the one-namespace layout.

engine/, export/, kernels/ and bench/ live at the top of the repository (the design card's layout)
but install only as refsd_trt.<folder>, never as top-level modules: a top-level ``kernels``
module would shadow the Hugging Face package of that name that transformers probes for.
pyproject.toml cannot list sub-packages of a remapped directory dynamically, hence this file.
"""

from setuptools import find_packages, setup

MAPPED = {
    "refsd_trt.engine": "engine",
    "refsd_trt.export": "export",
    "refsd_trt.kernels": "kernels",
    "refsd_trt.bench": "bench",
}

packages = find_packages(include=["refsd_trt", "refsd_trt.*"])
package_dir = {"refsd_trt": "refsd_trt"}
for name, folder in MAPPED.items():
    package_dir[name] = folder
    packages += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]

setup(
    packages=packages,
    package_dir=package_dir,
    package_data={"refsd_trt.kernels": ["cuda/*.cu"], "refsd_trt": ["py.typed", "presets/*.toml", "models/real_configs/*/*.json", "models/real_configs/*/*/*.json"]},
)
