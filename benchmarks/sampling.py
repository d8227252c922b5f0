"""advgen's sampler against HF `generate`, in the same run, at the same settings.

Setting (issue #3): GPT-2-small shape with random weights, batch 64, prompt 16, 64 new tokens, no
EOS (every row generates all 64 tokens). Measured: top-p 0.95 (no top-k) and top-k 50 (no top-p),
each with advgen and HF; and forward-only decoding, advgen's own prefill and decode steps with no
sampling at all (the next input is the previous token), which bounds what any sampler can reach.

Prints tokens/s, the ratios, peak memory, and one JSON object on the last line.

    python benchmarks/sampling.py                    # CPU; compile=True rows use inductor's C++ kernels
    python benchmarks/sampling.py --device cuda      # compile=True rows use CUDA graphs
"""
import argparse
import json
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging

from advgen import sampling


def peak_memory_reset(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as f:  # resets the peak resident set size (VmHWM) to the current one
        f.write("5")
    return _proc_status("VmRSS")


def peak_memory_since(device, base):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() - base
    return _proc_status("VmHWM") - base


def _proc_status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def measure(fns: dict, new_tokens, device, repeats):
    """{name: fn(new_tokens)} -> {name: (fastest wall time, peak memory one call adds)}. Each fn gets a
    warm-up call; then the rounds interleave the fns, so a busy machine slows them alike, and each fn's
    fastest round is kept: on a shared machine, noise only ever adds time."""
    times, memory = {k: [] for k in fns}, {}
    for name, fn in fns.items():  # compiled steps specialise on the cache length: warm those at full length
        fn(new_tokens if name.startswith("advgen-compiled") else 2)
    for _ in range(repeats):
        for name, fn in fns.items():
            base = peak_memory_reset(device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn(new_tokens)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
            memory[name] = max(memory.get(name, 0), peak_memory_since(device, base))
    return {k: (min(v), memory[k]) for k, v in times.items()}


def forward_only(model, prompts, new_tokens):
    """advgen's prefill and decode steps with no sampling (the next input is the last prompt token):
    the lower bound of sampled decoding."""
    _, cache, key_valid, position = sampling.prefill(model, prompts, new_tokens, 0)
    P = cache.shape[4] - new_tokens
    token = torch.tensor([p[-1] for p in prompts], device=cache.device)[:, None]
    for t in range(new_tokens - 1):
        sampling.forward_last(model, cache, token, position + t, torch.tensor([P + t], device=cache.device), key_valid)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--no-compile", action="store_true", help="skip the compile=True rows (compiling takes a minute)")
    args = ap.parse_args()
    logging.set_verbosity_error()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).to(device, getattr(torch, args.dtype)).eval()
    model.generation_config.eos_token_id = None  # every row generates all tokens, in both samplers
    prompts = torch.randint(0, model.config.vocab_size, (args.batch, args.prompt)).tolist()
    ids = torch.tensor(prompts, device=device)
    attention = torch.ones_like(ids)
    tokens = args.batch * args.new_tokens

    settings = {"top_p=0.95": dict(top_p=0.95, top_k=0), "top_k=50": dict(top_p=1.0, top_k=50)}
    fns = {"forward_only": lambda n: forward_only(model, prompts, n)}
    for name, kw in settings.items():
        fns[f"hf/{name}"] = lambda n, kw=kw: model.generate(
            input_ids=ids, attention_mask=attention, do_sample=True, max_new_tokens=n, pad_token_id=0, **kw)
        fns[f"advgen/{name}"] = lambda n, kw=kw: sampling.generate(model, prompts, n, seed=0, **kw)
        if not args.no_compile:
            fns[f"advgen-compiled/{name}"] = lambda n, kw=kw: sampling.generate(
                model, prompts, n, seed=0, compile=True, **kw)
    with torch.no_grad():
        runs = measure(fns, args.new_tokens, device, args.repeats)

    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads",
              "dtype": args.dtype, "batch": args.batch, "prompt": args.prompt, "new_tokens": args.new_tokens,
              "tokens_per_s": {k: round(tokens / t, 1) for k, (t, _) in runs.items()},
              "peak_memory_mb": {k: round(m / 2**20, 1) for k, (_, m) in runs.items()}}
    fwd = runs["forward_only"][0]
    for name in settings:
        hf = runs[f"hf/{name}"][0]
        for impl in ("advgen", "advgen-compiled"):
            if f"{impl}/{name}" in runs:
                ours = runs[f"{impl}/{name}"][0]
                result[f"speedup_vs_hf/{impl}/{name}"] = round(hf / ours, 2)
                result[f"overhead_vs_forward/{impl}/{name}"] = round(ours / fwd - 1, 3)
    for k, (t, m) in runs.items():
        print(f"{k:34s} {tokens / t:10.1f} tokens/s   peak +{m / 2**20:8.1f} MB")
    for k, v in result.items():
        if k.startswith(("speedup", "overhead")):
            print(f"{k:50s} {v}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
