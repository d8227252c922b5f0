"""What the benchmarks share: wall time and peak memory of one call, on CPU or CUDA."""
import time

import torch


def peak_memory_reset(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as f:  # resets the peak resident set size (VmHWM) to the current one
        f.write("5")
    return resident("VmRSS")


def peak_memory_since(device, base):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() - base
    return resident("VmHWM") - base


def resident(key):
    """A line of /proc/self/status in bytes: VmRSS (resident now), VmHWM (the peak since the last reset)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def timed(fn, device):
    """(fn(), its wall time in seconds), synchronising the GPU on both sides."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start
