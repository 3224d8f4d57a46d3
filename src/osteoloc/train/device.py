"""The one device picker of every stage (training, explain, paper B's U-Nets), and the hardware settings a
training job shares with the U-Nets: determinism, the precision switch, and the environment it records.

- `configure_determinism`: with `study.deterministic` on, `CUBLAS_WORKSPACE_CONFIG=:4096:8` (cuBLAS reads it
  when its first handle is made, so this runs before any model reaches the GPU),
  `torch.use_deterministic_algorithms` and no cuDNN autotuning. `warn_only`: ResNet's global average pool
  has no kernel torch marks deterministic for the CUDA backward (for a 1 x 1 output each gradient is one
  division, no atomics), so strict mode would refuse paper A's network; any such op is logged as a warning.
- `precision`: fp32, fp16 (float16 autocast + GradScaler, CUDA only) or bf16 (bfloat16 autocast, no
  scaler; CPU and GPUs from A100 on).
- `environment_info`: torch, CUDA, cuDNN, driver and GPU name of the job, for its run files.
"""

import contextlib
import os
import platform
import shutil
import subprocess

import torch

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
CUBLAS_WORKSPACE = ":4096:8"  # the setting NVIDIA's docs give for reproducible cuBLAS results


def pick_device(name="auto"):
    """`auto` -> CUDA when present, else the CPU; `cuda` on a machine without CUDA is an error (a run that
    asked for a GPU must not quietly take hours on a CPU); anything else as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
    return torch.device(name)


def configure_determinism(deterministic=True):
    """Reproducible kernels (deterministic) or the fastest ones (cuDNN autotuning). Call before the first
    CUDA operation of the process."""
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(bool(deterministic), warn_only=True)
    torch.backends.cudnn.deterministic = bool(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


def check_precision(precision, device):
    """ValueError for an unknown precision, or fp16 off CUDA (float16 needs the GradScaler, which is CUDA's)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, not {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision fp16 needs CUDA (float16 training needs its GradScaler); on {device} use "
                         "bf16 or fp32")


def autocast(device, precision):
    """The forward pass's context: autocast to float16 / bfloat16, or nothing for fp32."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device, precision):
    """A GradScaler, enabled only for fp16 on CUDA (bf16 has float32's range and needs none)."""
    return torch.amp.GradScaler("cuda", enabled=precision == "fp16" and device.type == "cuda")


def _driver_version():
    """The NVIDIA driver's version from nvidia-smi, or 'n/a' (no nvidia-smi, or it fails)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "n/a"
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "n/a"
    versions = sorted({line.strip() for line in out.splitlines() if line.strip()})
    return ", ".join(versions) or "n/a"


def environment_info(device):
    """What a run ran on: {"torch", "cuda" (torch's CUDA build, 'n/a' for a CPU build), "cudnn", "driver",
    "device", "gpu", "gpu_memory_gb", "python", "host"}; the GPU entries are 'n/a' on the CPU."""
    device = torch.device(device)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    info = {"torch": str(torch.__version__), "cuda": str(torch.version.cuda or "n/a"),
            "cudnn": str(cudnn) if cudnn else "n/a", "driver": "n/a", "device": str(device), "gpu": "n/a",
            "gpu_memory_gb": "n/a", "python": platform.python_version(), "host": platform.node()}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(driver=_driver_version(), gpu=torch.cuda.get_device_name(device),
                    gpu_memory_gb=round(properties.total_memory / 1e9, 1))
    return info
