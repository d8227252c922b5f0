"""Sampling from the generator.

For now this drives HF `generate` over left-padded prompts; the batched pure-torch kernels of
issue #3 replace its inside and keep its signature.
"""
import torch


@torch.no_grad()
def sample(model, tokenizer, prompts: list, max_new_tokens: int, temperature: float = 1.0,
           top_p: float = 1.0, seed: int = 0) -> list:
    """Prompts (lists of token ids) -> decoded continuations, cut at EOS.

    Runs under its own seed inside `fork_rng`, so it never perturbs the training RNG stream.
    """
    device = next(model.parameters()).device
    T = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (T - len(p)) + p for p in prompts], device=device)  # (B, T) left-padded
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts], device=device)
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=temperature,
                             top_p=top_p, top_k=0, max_new_tokens=max_new_tokens,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)
    model.train(was_training)
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in out[:, T:]]
