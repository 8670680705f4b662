"""dnnsep: end-to-end speech source separation (Dual-Path RNN TasNet) in PyTorch."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
for line in (here / "src" / "dnnsep" / "__init__.py").read_text().splitlines():
    if line.startswith("__version__"):
        exec(line, version)
requirements = [
    line.split("#")[0].strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.split("#")[0].strip()
]

setup(
    name="dnnsep",
    version=version["__version__"],
    description="End-to-end speech source separation (Dual-Path RNN TasNet) in PyTorch",
    long_description=(here / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    package_dir={"": "src"},
    packages=find_packages("src"),
    python_requires=">=3.9",
    install_requires=requirements,
    extras_require={
        "demo": ["pyaudio>=0.2.11"],
        "plot": ["matplotlib>=3.5"],
        "eval": ["fast_bss_eval>=0.1.3", "pesq>=0.0.4", "pystoi>=0.3"],  # SDR, PESQ, STOI in test.sh
        "export": ["onnx>=1.14", "onnxscript>=0.2", "onnxruntime>=1.16"],
        "hub": ["huggingface_hub>=0.20"],  # hf:OWNER/NAME[@REVISION] model references (dnnsep.hub)
        "rooms": ["pyroomacoustics>=0.9"],  # simulated rooms (dnnsep.data.rooms; 0.9: rir_hpf_* constants)
        # everything the test suite exercises (pyaudio needs PortAudio's headers: see README)
        "dev": [
            "pytest>=7",
            "ruff>=0.5",
            "matplotlib>=3.5",
            "fast_bss_eval>=0.1.3",
            "pesq>=0.0.4",
            "pystoi>=0.3",
            "pyaudio>=0.2.11",
            "onnx>=1.14",
            "onnxscript>=0.2",
            "onnxruntime>=1.16",
            "huggingface_hub>=0.20",
            "pyroomacoustics>=0.9",
        ],
    },
)
