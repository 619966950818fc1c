"""PyTorch workloads for the arbiter measurements (scripts/gpu-arbiter.sh, case e).

    python3 torch_loop.py infer|train START_NS SECONDS

infer: a transformer encoder (8 layers, d_model 1024, batch 32 x 256 tokens) in bf16, forward
only, one request per iteration (synchronised by reading the result back).
train: a similar encoder with a linear head, forward + backward + AdamW step per iteration, loss
read back each step (as training loops that log the loss do).
Both warm up before START_NS (CLOCK_MONOTONIC, as time.monotonic_ns), then count the iterations
finished by START_NS + SECONDS and print one key=value line.
"""
import sys
import time

import torch


def main() -> None:
    mode, start, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    torch.manual_seed(0)
    dev = torch.device("cuda")
    layer = torch.nn.TransformerEncoderLayer(
        d_model=1024, nhead=16, dim_feedforward=4096, batch_first=True, dtype=torch.bfloat16
    )
    model = torch.nn.TransformerEncoder(layer, num_layers=8 if mode == "infer" else 6).to(dev)
    x = torch.randn(32, 256, 1024, device=dev, dtype=torch.bfloat16)
    if mode == "infer":
        model.eval()

        def step() -> float:
            with torch.no_grad():
                return model(x).float().mean().item()

    else:
        head = torch.nn.Linear(1024, 1024, device=dev, dtype=torch.bfloat16)
        params = list(model.parameters()) + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=1e-4)
        target = torch.randn(32, 256, 1024, device=dev, dtype=torch.bfloat16)

        def step() -> float:
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(head(model(x)).float(), target.float())
            loss.backward()
            opt.step()
            return loss.item()

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    while time.monotonic_ns() < start:
        time.sleep(0.001)
    end = start + int(seconds * 1e9)
    iters = 0
    value = 0.0
    while True:
        value = step()
        if time.monotonic_ns() > end:
            break
        iters += 1
    print(f"mode={mode} iters={iters} seconds={seconds:.3f} rate={iters / seconds:.3f} "
          f"last={value:.4f}", flush=True)


if __name__ == "__main__":
    main()
