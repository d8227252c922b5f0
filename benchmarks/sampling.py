"""advgen's sampler against HF `generate`, in the same run, at the same settings.

Setting (issue #3): GPT-2-small shape with random weights, batch 64, prompt 16, 64 new tokens, no
EOS (every row generates all 64 tokens). Measured: top-p 0.95 (no top-k) and top-k 50 (no top-p),
each with advgen and HF; and forward-only decoding, advgen's own prefill and decode steps with no
sampling at all (the next input is the previous token), which bounds what any sampler can reach.

Whole runs on a shared machine drift by more than a sampler costs, so the sampler's cost is also measured
step by step: at every decode step, on that step's logits, the forward, advgen's pick and HF's per-step
sampling (its logits warpers, softmax and multinomial, as in `generate`) are timed one after another.

Prints tokens/s, the ratios, peak memory, the per-step costs, and one JSON object on the last line.

    python benchmarks/sampling.py                    # CPU; compile=True rows use inductor's C++ kernels
    python benchmarks/sampling.py --device cuda      # compile=True rows use CUDA graphs
"""
import argparse
import json

import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.generation.logits_process import LogitsProcessorList, TopKLogitsWarper, TopPLogitsWarper
from transformers.utils import logging

from advgen import kernels, sampling
from common import peak_memory_reset, peak_memory_since, timed


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
            times[name].append(timed(lambda: fn(new_tokens), device)[1])
            memory[name] = max(memory.get(name, 0), peak_memory_since(device, base))
    return {k: (min(v), memory[k]) for k, v in times.items()}


def forward_only(model, prompts, new_tokens):
    """advgen's prefill and decode steps with no sampling (the next input is the last prompt token):
    the lower bound of sampled decoding."""
    _, cache, key_valid, position = sampling.prefill(model, prompts, new_tokens, 0)
    P = key_valid.shape[1] - new_tokens
    slots = torch.arange(P, P + new_tokens, device=key_valid.device)
    token = torch.tensor([p[-1] for p in prompts], device=key_valid.device)[:, None]
    for t in range(new_tokens - 1):
        sampling.forward_last(model, cache, token, position + t, slots[t:t + 1], key_valid)


def hf_pick(warpers, logits):
    """HF `generate`'s sampling for one step (its `_sample`): the warpers on a float32 copy, softmax, multinomial."""
    probs = warpers(None, logits.clone()).softmax(-1)
    return torch.multinomial(probs, 1).squeeze(1)


def step_costs(model, prompts, new_tokens, settings, repeats):
    """Seconds per decode step of the forward, and of advgen's and HF's pick for each setting, all on the same
    logits, timed one after another at every step. Each (step, name) keeps its fastest of `repeats` decodes;
    the result is their mean over the steps. The next input is advgen's pick for the first setting."""
    device = next(model.parameters()).device
    B, vocab = len(prompts), model.config.vocab_size
    # advgen's per-step pick as `generate` runs it: the controls it derives once, then `kernels.pick` at every step
    controls = {name: kernels.controls(B, vocab, device, 1.0, kw["top_k"], kw["top_p"], 0.0, 1.0,
                                       sync_free=device.type == "cuda") for name, kw in settings.items()}
    warpers = {name: LogitsProcessorList([TopKLogitsWarper(kw["top_k"])] if kw["top_k"] else
                                         [TopPLogitsWarper(kw["top_p"])]) for name, kw in settings.items()}
    uniforms = torch.rand(new_tokens, B, kernels.PROPOSALS + 1, device=device)
    first = next(iter(settings))
    best = {}
    for _ in range(repeats):
        logits, cache, key_valid, position = sampling.prefill(model, prompts, new_tokens, 0)
        P = key_valid.shape[1] - new_tokens
        slots = torch.arange(P, P + new_tokens, device=device)
        for t in range(new_tokens - 1):
            times, picks = {}, {}
            for name in settings:
                picks[name], times[f"advgen/{name}"] = timed(
                    lambda: kernels.pick(logits, None, uniforms[t], controls[name])[0], device)
                _, times[f"hf/{name}"] = timed(lambda: hf_pick(warpers[name], logits), device)
            logits, times["forward"] = timed(lambda: sampling.forward_last(
                model, cache, picks[first][:, None], position + t, slots[t:t + 1], key_valid), device)
            for name, seconds in times.items():
                per_step = best.setdefault(name, {})
                per_step[t] = min(per_step.get(t, seconds), seconds)
    return {name: sum(per_step.values()) / len(per_step) for name, per_step in best.items()}


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
        steps = step_costs(model, prompts, args.new_tokens, settings, args.repeats)

    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads",
              "dtype": args.dtype, "batch": args.batch, "prompt": args.prompt, "new_tokens": args.new_tokens,
              "tokens_per_s": {k: round(tokens / t, 1) for k, (t, _) in runs.items()},
              "peak_memory_mb": {k: round(m / 2**20, 1) for k, (_, m) in runs.items()},
              "step_ms": {k: round(1e3 * s, 2) for k, s in steps.items()}}
    fwd = runs["forward_only"][0]
    for name in settings:
        hf = runs[f"hf/{name}"][0]
        for impl in ("advgen", "advgen-compiled"):
            if f"{impl}/{name}" in runs:
                ours = runs[f"{impl}/{name}"][0]
                result[f"speedup_vs_hf/{impl}/{name}"] = round(hf / ours, 2)
                result[f"overhead_vs_forward/{impl}/{name}"] = round(ours / fwd - 1, 3)
        for impl in ("advgen", "hf"):
            result[f"step_pick_over_forward/{impl}/{name}"] = round(steps[f"{impl}/{name}"] / steps["forward"], 3)
        result[f"step_pick_speedup_vs_hf/{name}"] = round(steps[f"hf/{name}"] / steps[f"advgen/{name}"], 2)
    for k, (t, m) in runs.items():
        print(f"{k:34s} {tokens / t:10.1f} tokens/s   peak +{m / 2**20:8.1f} MB")
    for k, v in result["step_ms"].items():
        print(f"per step: {k:24s} {v:10.2f} ms")
    for k, v in result.items():
        if k.startswith(("speedup", "overhead", "step_pick")):
            print(f"{k:50s} {v}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
