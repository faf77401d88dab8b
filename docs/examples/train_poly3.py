"""Train a linear classifier with the compiled third-order PolyLoss (docs/tutorial.md)."""
import torch

from poly3_loss import Poly3Loss

torch.manual_seed(0)
X = torch.randn(512, 20)
true_w = torch.randn(20, 5)
y = (X @ true_w).argmax(1)

model = torch.nn.Linear(20, 5)
criterion = Poly3Loss(e1=2.0, e2=0.5, e3=0.25)
optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
for step in range(201):
    optimizer.zero_grad()
    loss = criterion(model(X), y)
    loss.backward()
    optimizer.step()
    if step % 50 == 0:
        accuracy = (model(X).argmax(1) == y).float().mean()
        print(f"step {step:3d}  loss {loss.item():.4f}  accuracy {accuracy:.3f}")
