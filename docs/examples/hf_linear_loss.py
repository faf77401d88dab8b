"""A Hugging Face causal LM trained with lossc.LinearLoss("ce_zloss") in place of its lm_head + loss.

    python docs/examples/hf_linear_loss.py          # needs: pip install transformers

A tiny Llama (built from a config in code, nothing downloaded) is trained a few steps twice from the same
weights: once the usual way (the lm_head's logits [B, T, V], then the loss on them) and once with the
logits never formed (the last hidden states and lm_head.weight go to LinearLoss). The two runs print the
same losses (to float rounding); the fused one never holds the B x T x V logits or their gradient.
"""

from __future__ import annotations

import torch

import lossc


def tiny_llama(vocab: int = 257, dtype: torch.dtype = torch.float32, seed: int = 0):
    """A 2-layer Llama with a vocabulary of ``vocab`` tokens, its weights from ``seed``."""
    from transformers import LlamaConfig, LlamaForCausalLM
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=False)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).to(dtype)


def train(fused: bool, steps: int = 4, dtype: torch.dtype = torch.float32, beta: float = 1e-4) -> list[float]:
    """The losses of ``steps`` SGD steps of next-token prediction on fixed random tokens."""
    model = tiny_llama(dtype=dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    tokens = torch.randint(0, model.config.vocab_size, (3, 17), generator=torch.Generator().manual_seed(1))
    inputs, labels = tokens[:, :-1], tokens[:, 1:]
    labels = labels.clone()
    labels[0, :3] = -100  # (padding: ignored, as Hugging Face's own loss ignores -100)
    head = lossc.LinearLoss("ce_zloss", beta=beta, ignore_index=-100)
    unfused = lossc.loss("ce_zloss", beta=beta, ignore_index=-100)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        if fused:  # the decoder's last hidden states; the head's matmul happens inside the loss, chunk by chunk
            hidden = model.model(input_ids=inputs).last_hidden_state
            loss = head(hidden, model.lm_head.weight, labels)
        else:      # the usual way: logits [B, T, V] in memory
            logits = model(input_ids=inputs).logits
            loss = unfused(logits.movedim(-1, 1), labels)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def peak_extra_memory(fused: bool, vocab: int = 128256, batch: int = 4, length: int = 256) -> int:
    """Bytes one training step adds to the process's resident memory at its worst moment (lossc.bench's
    RSS high-water mark), for a model whose head is worth measuring: logits of [batch, length, vocab]."""
    from lossc.bench import rss_peak_extra_bytes
    model = tiny_llama(vocab=vocab)
    tokens = torch.randint(0, vocab, (batch, length + 1), generator=torch.Generator().manual_seed(2))
    inputs, labels = tokens[:, :-1], tokens[:, 1:]
    head, unfused = lossc.LinearLoss("ce_zloss"), lossc.loss("ce_zloss")

    def step():
        model.zero_grad(set_to_none=False)
        if fused:
            loss = head(model.model(input_ids=inputs).last_hidden_state, model.lm_head.weight, labels)
        else:
            loss = unfused(model(input_ids=inputs).logits.movedim(-1, 1), labels)
        loss.backward()

    step()  # (the parameters' gradients exist before the measured step: only the step's own memory counts)
    return rss_peak_extra_bytes(step)[0]


if __name__ == "__main__":
    plain, fused = train(fused=False), train(fused=True)
    for step, (a, b) in enumerate(zip(plain, fused)):
        print(f"step {step}: lm_head + ce_zloss {a:.6f}   LinearLoss(ce_zloss) {b:.6f}")
    for fused in (False, True):
        extra = peak_extra_memory(fused)
        print(f"peak extra memory of one step, vocab 128256, 4 x 256 tokens, "
              f"{'LinearLoss' if fused else 'lm_head + loss'}: {extra / 2 ** 20:.0f} MiB")
