"""PyTorch under a cap (run under libslicer.so with SLICER_MEMORY_LIMITS set).

usage: torch_cap.py CAP_BYTES   (PYTORCH_CUDA_ALLOC_CONF picks the allocator)
Checks: mem_get_info reports the cap; allocations past it raise torch.OutOfMemoryError; after
freeing, memory works again; NVML (pynvml) reports the cap. Exit 0 ok, 1 failed (pynvml missing
included), 77 no GPU.
"""
import os
import sys

import torch

cap = int(sys.argv[1])
conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "default")
if not torch.cuda.is_available():
    print("no GPU: skipped")
    sys.exit(77)

failures = []
free, total = torch.cuda.mem_get_info()
print(f"[{conf}] mem_get_info free={free} total={total} cap={cap}")
if total != cap:
    failures.append(f"mem_get_info total {total} != cap {cap}")

chunk = 256 << 20
held = []
oom = False
try:
    while len(held) * chunk < 3 * cap:
        held.append(torch.empty(chunk, dtype=torch.uint8, device="cuda"))
except torch.OutOfMemoryError as e:
    oom = True
    print(f"[{conf}] OutOfMemoryError after {len(held)} x 256 MiB: {str(e).splitlines()[0][:160]}")
got = len(held) * chunk
if not oom:
    failures.append(f"no OutOfMemoryError after {got} bytes (cap {cap})")
if got > cap:
    failures.append(f"held {got} bytes, over the cap {cap}")
if got < cap // 2:
    failures.append(f"held only {got} bytes under a cap of {cap}")
reserved = torch.cuda.memory_reserved()
print(f"[{conf}] held={got} reserved={reserved}")

del held
torch.cuda.empty_cache()
try:
    x = torch.randn((cap // 4) // 4, device="cuda")
    y = (x * 2).sum().item()
    z = torch.ones(1024, 1024, device="cuda") @ torch.ones(1024, 1024, device="cuda")
    assert z[0, 0].item() == 1024.0
    print(f"[{conf}] after freeing: {x.numel() * 4} bytes allocated and used")
    del x, z
except Exception as e:  # noqa: BLE001
    failures.append(f"after freeing: {type(e).__name__}: {e}")

try:
    import pynvml

    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    info = pynvml.nvmlDeviceGetMemoryInfo(h)
    print(f"[{conf}] nvml total={info.total} used={info.used} free={info.free}")
    if info.total != cap:
        failures.append(f"NVML total {info.total} != cap {cap}")
except ImportError:
    # Not a skip: the README says NVML inside a container reports the cap, and this is where a
    # real NVML is checked (tests/shim checks the fake's).
    failures.append("pynvml not installed (pip install nvidia-ml-py): NVML not checked")

for f in failures:
    print(f"[{conf}] FAIL: {f}")
print(f"[{conf}] {'ok' if not failures else 'FAILED'}")
sys.exit(1 if failures else 0)
