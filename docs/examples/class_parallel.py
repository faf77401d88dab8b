"""The focal loss with the classes split over ranks (vocabulary parallelism), on the CPU with gloo.

    torchrun --standalone --nproc_per_node 2 docs/examples/class_parallel.py

Each rank holds a contiguous block of the logits' classes (here 1001 classes as 501 + 500); the targets
are global class indices, the same on every rank. Every rank gets the loss of the whole rows, and the
gradient of its own block; the script checks both against the unsharded loss.
"""

import torch
import torch.distributed as dist

import lossc

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()

N, C = 8, 1001
g = torch.Generator().manual_seed(0)                  # the same logits and targets on every rank
logits = torch.randn(N, C, generator=g, dtype=torch.float64)
target = torch.randint(0, C, (N,), generator=g)
edges = [(C * r + world - 1) // world for r in range(world + 1)]   # rank r holds classes edges[r]:edges[r+1]
block = slice(edges[rank], edges[rank + 1])

focal = lossc.loss("focal", gamma=2.0, backend="torch", class_group=dist.group.WORLD)
shard = logits[:, block].clone().requires_grad_(True)
loss = focal(shard, target)                           # the loss of the whole rows, on every rank
loss.backward()                                       # shard.grad: this rank's block of the gradient

whole = logits.clone().requires_grad_(True)
expected = lossc.loss("focal", gamma=2.0, backend="torch")(whole, target)
expected.backward()
assert torch.allclose(loss, expected, rtol=1e-12, atol=0)
assert torch.allclose(shard.grad, whole.grad[:, block], rtol=1e-12, atol=1e-15)
print(f"rank {rank}: classes {block.start}..{block.stop - 1}, loss {loss.item():.12f} = unsharded "
      f"{expected.item():.12f}, gradient of its block matches")
dist.barrier()                                        # every rank done before the group goes away
dist.destroy_process_group()
