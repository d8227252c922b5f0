from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="advgen",
    version="0.1.0",
    description="GAN-style adversarial text generation for e-commerce (GPT-2 generator, BERT discriminator)",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["advgen", "advgen.*"]),
    package_data={"advgen.data": ["*.jsonl.gz", "*.md"]},
    install_requires=[
        # torch is deliberately unpinned here but installed first by the Makefile (torch==2.13.0, CPU),
        # so that pip does not pull a CUDA build onto a CPU machine.
        "torch>=2.2",
        "transformers>=5.0,<6",
        "safetensors",
        "tokenizers",
        "accelerate",   # GGUF loading of the packaged SmolLM2
        "gguf",
        "peft",         # --lora-r
        "click>=8",
        "sacrebleu>=2",  # paired BLEU and chrF of conditional tasks
        "rouge-score",   # paired ROUGE-L
        "tqdm",
        "numpy",
        "mauve-text",   # MAUVE (pulls faiss-cpu and scikit-learn)
        "matplotlib",   # advgen sweep's plot
        "scikit-learn", # train-scorer's metrics and bag-of-words baselines
        "scipy",        # Spearman correlation of the click scorer
        "nltk",         # --tokenize treebank: the word tokenization of the text-GAN benchmarks
    ],
    extras_require={
        # The packaged models are installed with --no-deps (their declared dependencies pull builds
        # they do not need): `make install` does it, or see README.md.
        "tensorboard": ["tensorboard"],
        "rebuild-data": ["pyarrow"],
        # nltk and fast-bleu are the references the BLEU tests and benchmarks/metrics.py compare against
        "test": ["pytest", "nltk", "fast-bleu", "scipy"],
        # TRL is the peer benchmarks/vs_trl.py compares against; the package never imports it
        "bench": ["trl==1.16.0"],
    },
    entry_points={"console_scripts": ["advgen=advgen.cli:main"]},
)
