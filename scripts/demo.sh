#!/usr/bin/env bash
# The main job: set up, compile a catalog loss, print its gradient, run it on random data.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
mkdir -p build
lossc compile focal --param gamma=2.0 -o build/focal_loss.py
lossc grad focal
python - <<'PY'
import importlib.util, torch
spec = importlib.util.spec_from_file_location("focal_loss", "build/focal_loss.py")
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
torch.manual_seed(0)
logits = torch.randn(8, 10, requires_grad=True)
target = torch.randint(0, 10, (8,))
loss = module.FocalLoss(gamma=2.0)(logits, target)
loss.backward()
# the same loss by hand, for comparison
logp = torch.log_softmax(logits.detach().double(), 1).gather(1, target[:, None]).squeeze(1)
by_hand = (-(1 - logp.exp()) ** 2 * logp).mean()
print(f"\nfocal loss on random 8x10 logits: {loss.item():.6f}  (by hand: {by_hand.item():.6f})")
print(f"gradient norm: {logits.grad.norm().item():.6f}; gradient of row 0:\n{logits.grad[0]}")
PY
