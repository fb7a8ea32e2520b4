"""Stand-in nvcc executables: each prints `nvcc --version` as a CUDA toolkit of the given
release does (the line edgeq reads: "Cuda compilation tools, release 12.6, V12.6.68")."""
from __future__ import annotations

from pathlib import Path


def nvcc(folder: Path, release: str) -> Path:
    """folder/nvcc reporting `release` ("12.6"); the folder is made if needed."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "nvcc"
    path.write_text(f"""#!/bin/sh
echo "nvcc: NVIDIA (R) Cuda compiler driver"
echo "Cuda compilation tools, release {release}, V{release}.68"
echo "Build cuda_{release}.r{release}/compiler.0_0"
""")
    path.chmod(0o755)
    return path
