"""Real inference loads (and a saturating trainer) for the arbiter measurements (issue 13;
scripts/gpu-arbiter.sh, parts f and g). Random weights only: every model is built from its
constructor or config, nothing is downloaded.

    python3 infer_loop.py MODEL START_NS SECONDS

MODEL:
  resnet50  torchvision ResNet-50, batch 8 x 3 x 224 x 224, fp16, eager (NCHW; INFER_CHANNELS_LAST=1
            for channels_last). cudnn.benchmark stays off, so every run picks the same kernels
            whatever its neighbours did during warm-up.
  bert      BERT-base encoder (transformers BertModel(BertConfig()): 12 layers, 768 wide), batch 1,
            sequence 128, fp16.
  mlp       8 x (Linear 1024 -> 1024 + ReLU), batch 16, fp16: ~16 tiny kernels a request, so a
            request costs mostly launches and the final synchronisation.
  gpt2      GPT-2 small (transformers GPT2LMHeadModel(GPT2Config()): 12 layers, 768 wide), fp16,
            batch 1: a request is a 32-token prefill and greedy decoding to 16 new tokens with the
            KV cache (the next token is chosen on the GPU; one read-back at the end).
            Chosen over ViT-B/16 at batch 1: that one is a 12-layer, 768-wide encoder over ~200
            tokens, i.e. the same load as `bert` here. An autoregressive decode is the pattern that
            no other model covers: 16 dependent forward passes a request, each a few hundred short
            launches, queued by the host without a synchronisation in between. The GPU idles
            for much of each request, which is where a lease that serialises clients loses most
            and where time-slicing between contexts is cheapest.
  trainer   a saturating training loop: 4 x Linear 8192 -> 8192 (ReLU between), batch 8192, bf16,
            forward + MSE loss + backward + SGD step, synchronised only every 50 steps (as a loop
            that logs its loss now and then). Throughput only.

Each process builds its model on the GPU, warms up (at least 20 requests and 1 s, then
torch.cuda.synchronize()), waits until START_NS (CLOCK_MONOTONIC, as time.monotonic_ns) and sends
requests back to back until START_NS + SECONDS. A request's latency is measured on the host, from
just before its first launch to the return of the synchronising read-back (.item() / .cpu()) of
its output. A request that ends after the window is not counted.

Optional start barrier (scripts/gpu-arbiter.sh sets it so that nobody waits a fixed 25 s for the
slowest model to build): with INFER_GO=PATH, after warming up the process creates PATH.ready.<pid>
and waits for the file PATH, which holds the start time in ns (written by the script once every
process is ready). START_NS stays the deadline: if PATH has not appeared by then, the process
starts at START_NS (at once if that has passed; late_ms says by how much).

Output, one line on stdout:
  model=M reqs=N seconds=S rate=REQ_PER_S p50_ms= p90_ms= p99_ms= max_ms= mean_ms= late_ms= ready_s= go=
  model=trainer iters=N seconds=S rate=IT_PER_S launched=N late_ms= ready_s= go=
The trainer counts the steps whose CUDA event (recorded after the optimizer step) completed
within SECONDS of an event recorded at the start, so no per-step synchronisation is needed and
steps still queued at the end are not counted. On any error: `model=M error=...` (the traceback
on stderr) and exit status 1.
"""
import math
import os
import signal
import sys
import time
import traceback

T0 = time.monotonic_ns()  # before importing torch: ready_s counts the imports

MODELS = ("resnet50", "bert", "mlp", "gpt2", "trainer")
WARMUP_REQS = 20
WARMUP_S = 1.0
TRAIN_SYNC_EVERY = 50


def build(name, torch, dev):
    """Returns step(): one request (synchronised) for the inference models, one training step
    (not synchronised) for the trainer, and the loss tensor for the trainer's periodic sync."""
    if name == "resnet50":
        import torchvision

        model = torchvision.models.resnet50(weights=None).to(dev, torch.float16).eval()
        x = torch.randn(8, 3, 224, 224, device=dev, dtype=torch.float16)
        if os.environ.get("INFER_CHANNELS_LAST") == "1":
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        return lambda: model(x)[0, 0].item()

    if name == "bert":
        from transformers import BertConfig, BertModel

        config = BertConfig()
        model = BertModel(config).to(dev, torch.float16).eval()
        ids = torch.randint(0, config.vocab_size, (1, 128), device=dev)
        mask = torch.ones_like(ids)
        return lambda: model(input_ids=ids, attention_mask=mask).last_hidden_state[0, 0, 0].item()

    if name == "mlp":
        layers = []
        for _ in range(8):
            layers += [torch.nn.Linear(1024, 1024), torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers).to(dev, torch.float16).eval()
        x = torch.randn(16, 1024, device=dev, dtype=torch.float16)
        return lambda: model(x)[0, 0].item()

    if name == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config()
        model = GPT2LMHeadModel(config).to(dev, torch.float16).eval()
        prompt = torch.randint(0, config.vocab_size, (1, 32), device=dev)

        def step():
            out = model(input_ids=prompt, use_cache=True)
            tok = out.logits[:, -1:].argmax(-1)
            toks = [tok]
            for _ in range(15):
                out = model(input_ids=tok, past_key_values=out.past_key_values, use_cache=True)
                tok = out.logits[:, -1:].argmax(-1)
                toks.append(tok)
            return torch.cat(toks, 1).cpu()

        return step

    if name == "trainer":
        layers = []
        for i in range(4):
            layers.append(torch.nn.Linear(8192, 8192, bias=False, device=dev, dtype=torch.bfloat16))
            if i < 3:
                layers.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*layers)
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)
        x = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
        target = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(model(x), target)
            loss.backward()
            opt.step()
            return loss

        return step

    raise ValueError(f"unknown model {name!r} (one of {', '.join(MODELS)})")


def wait_for_start(start):
    """Blocks until the run starts; returns (start_ns, how it was decided)."""
    go = os.environ.get("INFER_GO")
    how = "argv"
    if go:
        open(f"{go}.ready.{os.getpid()}", "w").close()
        while time.monotonic_ns() < start:
            if os.path.exists(go):
                with open(go) as f:
                    start, how = int(f.read().strip()), "file"
                break
            time.sleep(0.002)
        else:
            how = "deadline"
    while time.monotonic_ns() < start:
        time.sleep(0.001)
    return start, how


def pct(sorted_ms, q):
    if not sorted_ms:
        return float("nan")
    return sorted_ms[max(0, math.ceil(q * len(sorted_ms)) - 1)]


def run(name, start, seconds):
    import torch

    torch.manual_seed(0)
    dev = torch.device("cuda")
    step = build(name, torch, dev)
    trainer = name == "trainer"
    grad = torch.enable_grad() if trainer else torch.inference_mode()
    with grad:
        w0 = time.monotonic_ns()
        n = 0
        while n < WARMUP_REQS or time.monotonic_ns() - w0 < WARMUP_S * 1e9:
            out = step()
            n += 1
            if trainer and n % TRAIN_SYNC_EVERY == 0:
                out.item()
        torch.cuda.synchronize()
        ready_s = (time.monotonic_ns() - T0) / 1e9

        start, how = wait_for_start(start)
        end = start + int(seconds * 1e9)
        late_ms = (time.monotonic_ns() - start) / 1e6
        tail = f"late_ms={late_ms:.1f} ready_s={ready_s:.1f} go={how}"

        if trainer:
            t_start = torch.cuda.Event(enable_timing=True)
            t_start.record()
            events = []
            while time.monotonic_ns() < end:
                loss = step()
                ev = torch.cuda.Event(enable_timing=True)
                ev.record()
                events.append(ev)
                if len(events) % TRAIN_SYNC_EVERY == 0:
                    loss.item()
            torch.cuda.synchronize()
            window_ms = seconds * 1000
            iters = sum(1 for ev in events if t_start.elapsed_time(ev) <= window_ms)
            return (f"model={name} iters={iters} seconds={seconds:.3f} rate={iters / seconds:.3f} "
                    f"launched={len(events)} {tail}")

        lat = []
        while True:
            t0 = time.monotonic_ns()
            if t0 >= end:
                break
            step()
            t1 = time.monotonic_ns()
            if t1 > end:
                break
            lat.append((t1 - t0) / 1e6)
    s = sorted(lat)
    mean = sum(s) / len(s) if s else float("nan")
    return (f"model={name} reqs={len(s)} seconds={seconds:.3f} rate={len(s) / seconds:.3f} "
            f"p50_ms={pct(s, 0.50):.3f} p90_ms={pct(s, 0.90):.3f} p99_ms={pct(s, 0.99):.3f} "
            f"max_ms={pct(s, 1.0):.3f} mean_ms={mean:.3f} {tail}")


def main() -> int:
    name = sys.argv[1] if len(sys.argv) > 1 else "?"
    # timeout(1) sends SIGTERM: say so on the result line instead of dying silently.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if len(sys.argv) != 4:
            raise ValueError(f"usage: infer_loop.py {'|'.join(MODELS)} START_NS SECONDS")
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r} (one of {', '.join(MODELS)})")
        line = run(name, int(sys.argv[2]), float(sys.argv[3]))
    except BaseException as e:  # noqa: BLE001 (KeyboardInterrupt and SIGTERM's exit too)
        traceback.print_exc(file=sys.stderr)
        msg = f"{type(e).__name__}:{e}".replace("\n", " ").split()
        print(f"model={name} error={'_'.join(msg)[:300]}", flush=True)
        return 1
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
