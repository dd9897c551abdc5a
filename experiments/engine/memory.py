"""Peak memory of a batched few-shot step, and the GPU chunk size (cells per call) it allows.

The engine trains a chunk of C cells in one ``vmap``-ed call; its peak memory is affine in C,

    peak(C) = base + C * per_cell,                                            (1)

because every cell carries its own copy of every activation of every task (cells never share
work). ``per_cell`` is itself linear in the tasks per meta-step (tasks are independent too), at
a fixed network and episode shape (ways, shots, query); :meth:`MemoryModel.scaled` uses that to
carry a measurement made with few tasks to the paper's 32. It is not linear in the images per
task: the support images enter every inner step and the second-order backward, the query
images only the last forward (measured: 2 -> 5 query images per class raised it 1.46x).

Measuring the peak of one step (meta-gradients, exact or first order, as the engine runs it):

* CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus what was
  allocated before the step: the caching allocator's own count of live tensor bytes.
* CPU: torch has no allocator statistics there (and ``tracemalloc`` sees no tensor memory), so
  the step runs in a fresh Python process with glibc's mmap threshold fixed at 64 KiB
  (``MALLOC_MMAP_THRESHOLD_``): every tensor buffer above that size is then its own mapping,
  handed back to the kernel when freed, and the kernel's resident high-water mark (``VmHWM``,
  reset through ``/proc/self/clear_refs``) minus the resident size before the step is the
  peak of live buffers, up to page rounding and the small allocations below the threshold. One
  warm-up step runs first (one-time buffers of the kernels and of torch.func).

The CPU figure is an upper bound for CUDA rather than a prediction of it: CPU convolutions
unfold their input (im2col, up to 9x a 3x3 layer's input) where cuDNN uses a bounded workspace.
So :func:`cuda_chunk_size` measures (1) on the GPU itself at the run's own episode size (two
single steps, about a second) and divides the device's free memory
(``torch.cuda.mem_get_info``) by it; the CPU model is the fallback and the tested part.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

import torch

from mamlconv.experiments.config import SweepConfig

MAX_CHUNK = 64
"""Upper bound on cells per call: the largest batch the benchmarks time (1..64 cells)."""
SAFETY = 0.8
"""Fraction of the free memory a chunk may plan to use (fragmentation, cuDNN workspaces)."""
MMAP_THRESHOLD = 1 << 16
"""glibc mmap threshold for the CPU measurement, in bytes (64 KiB)."""


@dataclass(frozen=True)
class MemoryModel:
    """``peak(C) = base_bytes + C * per_cell_bytes`` for one step with ``tasks`` tasks per
    meta-step on ``device`` (``cpu`` or ``cuda``)."""

    base_bytes: float
    per_cell_bytes: float
    tasks: int
    device: str
    cells_measured: tuple[int, ...]
    peaks_bytes: tuple[float, ...]

    def peak(self, n_cells: int) -> float:
        """Predicted peak bytes of one step of ``n_cells`` cells (Eq. 1)."""
        return self.base_bytes + n_cells * self.per_cell_bytes

    def scaled(self, tasks: int) -> MemoryModel:
        """The model at another number of tasks per meta-step (same network and episode
        shape): ``per_cell`` scales linearly, ``base`` (parameters, buffers) stays."""
        ratio = tasks / self.tasks
        return MemoryModel(
            self.base_bytes,
            self.per_cell_bytes * ratio,
            int(tasks),
            self.device,
            self.cells_measured,
            tuple(p * ratio for p in self.peaks_bytes),
        )

    def chunk_size(self, free_bytes: float, *, safety: float = SAFETY, cap: int = MAX_CHUNK) -> int:
        """Largest C with peak(C) <= safety * free_bytes, clipped to [1, cap]."""
        if self.per_cell_bytes <= 0:
            return cap
        c = math.floor((safety * free_bytes - self.base_bytes) / self.per_cell_bytes)
        return int(min(cap, max(1, c)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit(cells: list[int], peaks: list[float], *, tasks: int, device: str) -> MemoryModel:
    """Least-squares line through (cells, peak); per-cell slope at least 0."""
    n = len(cells)
    if n < 2 or len(set(cells)) < 2:
        raise ValueError(f"need peaks at two or more different cell counts, got cells={cells}")
    mc, mp = sum(cells) / n, sum(peaks) / n
    sxx = sum((c - mc) ** 2 for c in cells)
    slope = sum((c - mc) * (p - mp) for c, p in zip(cells, peaks, strict=True)) / sxx
    slope = max(slope, 0.0)
    return MemoryModel(mp - slope * mc, slope, tasks, device, tuple(cells), tuple(peaks))


# ----------------------------------------------------------------------------- one step


def _one_step(config: SweepConfig, n_cells: int, device: torch.device) -> None:
    from mamlconv.experiments.engine.loop import make_step
    from mamlconv.experiments.engine.state import initial_state, resolve_dtype
    from mamlconv.experiments.problems.registry import get_problem

    problem = get_problem(config.problem, **config.problem_options)
    dtype = resolve_dtype(config.dtype)
    init, stream = initial_state(problem, config, dtype=dtype, device=device)
    tasks = stream.next()
    step = make_step(problem, variant=config.variant, steps=config.steps)
    params = {n: p.unsqueeze(0).repeat(n_cells, *([1] * p.dim())) for n, p in init.items()}
    alphas = torch.full((n_cells,), 0.01, dtype=dtype, device=device)
    out = step(params, alphas, tasks, need_direction=True, need_stats=False)
    del out


def measure_cuda(config: SweepConfig, cells: tuple[int, ...] = (1, 2)) -> list[float]:
    """Peak bytes above the resident baseline of one step per entry of ``cells`` (CUDA)."""
    device = torch.device(config.device if config.device.startswith("cuda") else "cuda")
    _one_step(config, 1, device)  # warm-up: cuDNN plans, the data cache
    peaks = []
    for n in cells:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        _one_step(config, n, device)
        torch.cuda.synchronize(device)
        peaks.append(float(torch.cuda.max_memory_allocated(device) - before))
    return peaks


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        text = f.read()
    match = re.search(rf"^{key}:\s+(\d+) kB", text, flags=re.M)
    if match is None:
        raise OSError(f"/proc/self/status has no {key}")
    return int(match.group(1)) * 1024


def peak_bytes(function: Any) -> float:
    """Resident high-water mark above the start while ``function()`` runs (Linux; meaningful
    when the process started with ``MALLOC_MMAP_THRESHOLD_`` = :data:`MMAP_THRESHOLD`, see the
    module docstring; ``benchmarks/cnn_bench.py`` re-executes itself so)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    before = _status_bytes("VmRSS")
    function()
    return float(_status_bytes("VmHWM") - before)


def _measure_cpu_here(config: SweepConfig, cells: tuple[int, ...]) -> list[float]:
    """The child's side of :func:`measure_cpu` (needs the mmap threshold set at start-up)."""
    device = torch.device("cpu")
    _one_step(config, 1, device)
    return [peak_bytes(lambda n=n: _one_step(config, n, device)) for n in cells]


def measure_cpu(config: SweepConfig, cells: tuple[int, ...] = (1, 2, 4)) -> list[float]:
    """Peak bytes of one CPU step per entry of ``cells``, in a fresh process (see the module
    docstring). Linux only (``/proc``); raises OSError elsewhere."""
    if not os.path.exists("/proc/self/clear_refs"):
        raise OSError("measuring CPU peak memory needs Linux /proc/self/clear_refs")
    env = {
        **os.environ,
        "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
        "MALLOC_TRIM_THRESHOLD_": "0",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    code = (
        "import json, sys, torch; torch.set_num_threads(1); "
        "from mamlconv.experiments.config import SweepConfig; "
        "from mamlconv.experiments.engine.memory import _measure_cpu_here; "
        "cfg = SweepConfig.from_json(sys.argv[1]); "
        "print(json.dumps(_measure_cpu_here(cfg, tuple(json.loads(sys.argv[2])))))"
    )
    cpu_config = config.replace(device="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", code, cpu_config.to_json(), json.dumps(list(cells))],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"CPU memory measurement failed: {proc.stderr.strip()[-500:]}")
    return [float(v) for v in json.loads(proc.stdout.strip().splitlines()[-1])]


def measure_model(config: SweepConfig, cells: tuple[int, ...] = (1, 2, 4)) -> MemoryModel:
    """Measure (1) on the config's device (CUDA or CPU) and fit it."""
    from mamlconv.experiments.engine.state import resolve_device

    device = torch.device(resolve_device(config.device))
    if device.type == "cuda":
        peaks = measure_cuda(config, cells)
    else:
        peaks = measure_cpu(config, cells)
    return fit(list(cells), peaks, tasks=config.tasks_per_batch, device=device.type)


_CUDA_CHUNKS: dict[str, int] = {}


def cuda_chunk_size(config: SweepConfig, *, safety: float = SAFETY, cap: int = MAX_CHUNK) -> int:
    """Cells per call for a few-shot sweep on CUDA: (1) measured on the device at this episode
    size, then the largest chunk that fits ``safety`` x the free memory (``mem_get_info``).
    Cached per configuration identity within the process."""
    key = config.to_json() + f"|{safety}|{cap}"
    if key not in _CUDA_CHUNKS:
        model = fit(
            [1, 2], measure_cuda(config, (1, 2)), tasks=config.tasks_per_batch, device="cuda"
        )
        device = torch.device(config.device if config.device.startswith("cuda") else "cuda")
        free, _total = torch.cuda.mem_get_info(device)
        _CUDA_CHUNKS[key] = model.chunk_size(free, safety=safety, cap=cap)
    return _CUDA_CHUNKS[key]
