"""A real model under a cap: a transformer language model's training steps, then inference.

usage: torch_model.py CAP_BYTES
The cap binds: a first training step at a batch whose logits alone need more than the cap must
raise torch.OutOfMemoryError (not crash, not succeed); after it, training at a batch that fits
and inference run within the cap. Exit 0 when all of that held, 1 otherwise, 77 without a GPU.
"""
import sys
import time

import torch
import torch.nn as nn

cap = int(sys.argv[1])
if not torch.cuda.is_available():
    print("no GPU: skipped")
    sys.exit(77)

torch.manual_seed(0)
vocab, d, layers, seq, batch = 8192, 512, 6, 256, 16


class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, 8, 4 * d, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers)
        self.out = nn.Linear(d, vocab)

    def forward(self, x):
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], device=x.device)
        return self.out(self.enc(self.emb(x), mask=mask, is_causal=True))


model = LM().cuda()
opt = torch.optim.AdamW(model.parameters(), lr=3e-4)


def step(data):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(data[:, :-1])
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, vocab), data[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


# A batch whose fp32 logits alone (big * seq * vocab * 4 bytes) are 1.5x the cap.
big = max(batch, (3 * cap // 2) // (seq * vocab * 4) + 1)
bound = False
try:
    step(torch.randint(0, vocab, (big, seq + 1), device="cuda"))
except torch.OutOfMemoryError as e:
    bound = True
    print(f"model: batch {big} over the cap: OutOfMemoryError ({str(e).splitlines()[0][:120]})")
opt.zero_grad(set_to_none=True)
torch.cuda.empty_cache()
torch.cuda.reset_peak_memory_stats()
if not bound:
    print(f"model: batch {big} ran under a cap of {cap}: the cap did not bind: FAILED")

data = torch.randint(0, vocab, (batch, seq + 1), device="cuda")
losses = []
t0 = time.time()
for _ in range(20):
    losses.append(step(data))
torch.cuda.synchronize()
train_s = time.time() - t0
model.eval()
with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
    pred = model(data[:4, :-1]).argmax(-1)
peak = torch.cuda.max_memory_reserved()
free, total = torch.cuda.mem_get_info()
ok = bound and losses[-1] < losses[0] and all(l == l for l in losses) and peak <= cap and total == cap
print(f"model: params={sum(p.numel() for p in model.parameters())} loss {losses[0]:.3f} -> "
      f"{losses[-1]:.3f} in 20 steps ({train_s:.1f}s); inference {tuple(pred.shape)}; "
      f"peak reserved={peak} cap={cap} mem_get_info total={total}: {'ok' if ok else 'FAILED'}")
sys.exit(0 if ok else 1)
