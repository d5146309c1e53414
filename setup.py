"""Packaging for recbole-duet.

The top-level ``properties/`` folder is shipped inside the package as ``recbole_duet.properties`` so that an
installed plugin (``pip install .``) finds its yaml files from any working directory.
"""

from setuptools import setup

INSTALL_REQUIRES = [
    # The plugin subclasses RecBole's Config and Trainer and relies on their private hooks; those are only
    # known to work on 1.2.1 (the notes in recbole_duet/compat.py list what we patch around).
    "recbole==1.2.1",
    # 2.13 is the build we test on (CPU wheel here). 2.6+ changed torch.load to weights_only=True, which our
    # checkpoint format is designed for; older releases lack the safe-loading allow-list we rely on.
    "torch>=2.6,<3",
    # RecBole 1.2.1 crashes on numpy 2 (np.float_ aliases); recbole_duet.compat restores what it needs, so
    # both major versions work.
    "numpy>=1.24,<3",
    # pandas 3 makes RecBole's `df[col].fillna(..., inplace=True)` a silent no-op (DIN then fails on NaN) and
    # `Series.agg(len)` no longer works row by row (sequence features fail to load); recbole_duet.compat mends
    # both, so 2.x and 3.x work.
    "pandas>=2.0,<4",
    # Config files are yaml; RecBole already needs it, we load our own property files with it.
    "pyyaml>=6.0",
]
HYPER_REQUIRES = [
    # Hyper-parameter search (run_hyper.py). RecBole 1.2.1 pins hyperopt 0.2.5, whose `import pkg_resources`
    # fails on setuptools >= 81; 0.3 does not need it and works on numpy 2. From 0.2.7 on hyperopt samples
    # with numpy's Generator, which RecBole's exhaustive search breaks on: recbole_duet.search.hyper_tuning
    # replaces it. <0.4 because the plugin calls hyperopt's internal trial-document helpers for that search.
    "hyperopt>=0.3,<0.4",
    # --engine optuna: studies in a shared database with pruning. <6: recbole_duet.search.optuna_search pops
    # the study's trial queue through Study._pop_waiting_trial_id, the queue half of Study.ask. >=4.9: its
    # heartbeat callback (RetryHeartbeatStaleTrialCallback) queues a dead worker's trial again.
    "optuna>=4.9,<6",
]
SERVE_REQUIRES = [
    # Export (onnx.checker) and both runtimes. torch.onnx.export runs its TorchScript exporter (dynamo=False),
    # which needs no onnxscript.
    "onnx>=1.16",
    "onnxruntime>=1.18",
    # The service: FastAPI on uvicorn; [standard] brings uvloop and httptools, the faster event loop and
    # HTTP parser. uvicorn >= 0.30 restarts a worker process that dies.
    "fastapi>=0.110",
    "uvicorn[standard]>=0.30",
    "prometheus_client>=0.20",
]
DOCS_REQUIRES = [
    # The documentation site (mkdocs.yml): MkDocs 1.6 for its link and anchor validation, which `mkdocs build
    # --strict` in CI turns into errors; the Material theme; mkdocstrings' Python handler for the API reference,
    # rendered from the docstrings without importing the package.
    "mkdocs>=1.6",
    "mkdocs-material>=9.5",
    "mkdocstrings[python]>=0.29",
]
BENCH_REQUIRES = [
    "matplotlib>=3.7",
    # benchmarks/serving.py drives the service with an asynchronous httpx client.
    "httpx>=0.27",
]

setup(
    name="recbole-duet",
    version="0.1.0",
    description="DUET (WWW 2023) device-cloud parameter generation as a RecBole plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=[
        "recbole_duet",
        "recbole_duet.model",
        "recbole_duet.training",
        "recbole_duet.search",
        "recbole_duet.device",
        "recbole_duet.deploy",
        "recbole_duet.serving",
        "recbole_duet.properties",
        "recbole_duet.properties.model",
        "recbole_duet.properties.dataset",
    ],
    package_dir={"recbole_duet.properties": "properties"},
    package_data={"recbole_duet.properties": ["*.yaml", "*/*.yaml", "*.test"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # The benchmark harness draws its plots with matplotlib; the tests run the harness and a search.
        "bench": BENCH_REQUIRES,
        "hyper": HYPER_REQUIRES,
        # recbole-duet export / serve and the device runtime (recbole_duet.device needs onnxruntime only).
        "serve": SERVE_REQUIRES,
        # mkdocs serve / mkdocs build --strict (CI builds the docs after the tests).
        "docs": DOCS_REQUIRES,
        # The deployment tests fuzz a live server with hypothesis through httpx; the batcher's run on looptime's
        # fake-clock event loop, so that a busy machine cannot move a batch's departure.
        # psycopg2-binary: the search's test against a real PostgreSQL server.
        "test": [
            "pytest>=7", "hypothesis>=6", "looptime>=0.9", "psycopg2-binary>=2.9",
            *BENCH_REQUIRES, *HYPER_REQUIRES, *SERVE_REQUIRES,
        ],
    },
    entry_points={
        "console_scripts": ["recbole-duet=recbole_duet.cli:main", "recbole-duet-hyper=recbole_duet.cli:hyper_main"]
    },
)
