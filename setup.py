from pathlib import Path

from setuptools import setup

# The top-level scripts are installed as modules too, so `python -m train` works from anywhere.
scripts = [p.stem for p in Path(__file__).parent.glob("*.py") if p.stem != "setup"]

setup(
    name="cmi-finetune",
    version="0.1.0",
    description="Pure-PyTorch reference implementation of CMI fine-tuning (arXiv 2502.11258)",
    packages=["benchmark", "cmi", "common", "data", "harness", "models", "study"],
    py_modules=scripts,
    python_requires=">=3.10",
    install_requires=["torch", "numpy", "tokenizers", "datasets", "tqdm", "safetensors", "huggingface_hub"],
    # transformers and peft are test-only oracles: the package never imports them.
    # scipy: report.py's t-tests and confidence intervals (study.stats)
    extras_require={"test": ["pytest", "transformers", "peft", "matplotlib", "tensorboard", "scipy"], "plot": ["matplotlib"],
                    "tensorboard": ["tensorboard"], "stats": ["scipy"]},
)
