"""Variance of the policy-gradient estimate under each REINFORCE baseline, on the SAME real rollouts.

For each of --batches minibatches (prompts_per_step prompts x k samples from the run's train prompts,
at temperature 1), the realism rewards are turned into advantages by each baseline kind, and the
minibatch gradient g = -(1/B) sum_i A_i grad log p(y_i) is computed over all generator parameters.
Reported per kind: the total variance sum_d Var(g_d) over the minibatches (unbiased, per coordinate,
summed over the D parameters), its ratio to plain REINFORCE (none), and |mean g| (all kinds estimate
the same gradient, so these should agree up to noise). The ema baseline is warmed up on --ema-warmup
earlier batches (not measured) and then updated after each batch, as in training; self-critical decodes
each prompt greedily.

The reward is P(real) from the run's discriminator/ when it has one (an adversarial run); otherwise from a
fresh discriminator of the run's --discriminator spec trained --disc-steps steps on real train titles
against samples. Default run: runs/quick if present, else a tiny from-config generator (a smoke test).

    python benchmarks/baseline_variance.py [--run runs/quick] [--batches 16] [--prompts 16] [--k 4]

The last line of the output is JSON.
"""
import argparse
import json
import time
from pathlib import Path

import torch

from advgen import baselines, data, models, rewards, runs, sampling, scorers, seeds
from advgen.baselines import KINDS
from advgen.config import PretrainConfig


def load(run: str, device):
    """-> (pretrain config, generator, tokenizer, realism scorer or None, label)."""
    if run and Path(run).is_dir():
        _, cfg, _, model, tokenizer = runs.load(run)
        disc = scorers.load_scorer(Path(run) / "discriminator", device) if (Path(run) / "discriminator").is_dir() else None
        return cfg, model, tokenizer, disc, run
    cfg = PretrainConfig(generator="scratch:gpt2-tiny", discriminator="scratch:bert-tiny", max_target_tokens=12)
    model, tokenizer = models.load_generator(cfg.generator, seed=0)
    return cfg, model, tokenizer, None, "tiny (scratch:gpt2-tiny, untrained)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/quick" if Path("runs/quick").is_dir() else "",
                    help="pretrain or adversarial run folder [default: runs/quick if present, else a tiny model]")
    ap.add_argument("--batches", type=int, default=16, help="measured minibatches")
    ap.add_argument("--prompts", type=int, default=16, help="prompts per minibatch")
    ap.add_argument("--k", type=int, default=4, help="samples per prompt")
    ap.add_argument("--ema-warmup", type=int, default=4, help="earlier batches that set the EMA (not measured)")
    ap.add_argument("--ema-decay", type=float, default=0.9)
    ap.add_argument("--disc-steps", type=int, default=10, help="training steps of a fresh discriminator")
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated baseline kinds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if args.batches < 2:
        ap.error("--batches must be at least 2 (a variance over minibatches)")
    started = time.time()
    device = models.resolve_device(args.device)
    cfg, model, tokenizer, disc, label = load(args.run, device)
    model.to(device).eval()
    train = data.load_splits(cfg)["train"]
    eos, pad, N, P, k = tokenizer.eos_token_id, tokenizer.pad_token_id, cfg.max_target_tokens, args.prompts, args.k

    def rollouts(index: int):
        rows = data.batch_at(train, P, args.seed, index, "prompts")
        prompts = [runs.prompt(tokenizer, cfg, r) for r in rows for _ in range(k)]
        s = sampling.generate(model, prompts, N, temperature=1.0, eos_id=eos, pad_id=pad,
                              seed=seeds.derive(args.seed, "rollout", index))
        return prompts, s, sampling.decode(tokenizer, s)

    if disc is None:  # a fresh discriminator, trained briefly so the rewards carry signal
        disc = scorers.new_discriminator(cfg.discriminator, 32, seed=seeds.derive(args.seed, "disc-head"))
        disc.model.to(device)
        opt = torch.optim.AdamW(disc.model.parameters(), lr=5e-5 if not cfg.discriminator.startswith("scratch:") else 1e-3)
        for j in range(args.disc_steps):
            _, _, fake = rollouts(10_000 + j)
            real = [str(r[cfg.field]).strip() for r in data.batch_at(train, len(fake), args.seed, j, "disc-real")]
            d = scorers.discriminator_step(disc, opt, real, fake)
        print(f"discriminator: {cfg.discriminator}, {args.disc_steps} steps, last accuracy {d['disc/accuracy']:.3f}")

    params = [p for p in model.parameters() if p.requires_grad]
    D = sum(p.numel() for p in params)
    s1 = {kind: torch.zeros(D, dtype=torch.float64, device=device) for kind in kinds}
    s2 = {kind: torch.zeros(D, dtype=torch.float64, device=device) for kind in kinds}
    ema = None
    for j in range(args.ema_warmup):
        ema = baselines.ema_update(ema, rewards.realism(disc, rollouts(20_000 + j)[2]), args.ema_decay)
    reward_means = []
    for b in range(args.batches):
        prompts, s, texts = rollouts(b)
        r = rewards.realism(disc, texts)                                          # (B,), shared by every kind
        reward_means.append(r.mean().item())
        greedy = None
        if "self-critical" in kinds:
            g = sampling.generate(model, prompts[::k], N, temperature=0.0, eos_id=eos, pad_id=pad)
            greedy = rewards.realism(disc, sampling.decode(tokenizer, g))
        logp = models.teacher_forced_logprobs(model, prompts, s, pad).sum(1)   # (B,) with gradient
        for kind in kinds:
            a, _, new_ema = baselines.advantages(r, kind, k=k, greedy_rewards=greedy, ema=ema, decay=args.ema_decay)
            grads = torch.autograd.grad(-(a.to(device) * logp).mean(), params, retain_graph=True, allow_unused=True)
            flat = torch.cat([(gr if gr is not None else torch.zeros_like(p)).reshape(-1) for gr, p in zip(grads, params)]).double()
            s1[kind] += flat
            s2[kind] += flat * flat
        ema = new_ema
        print(f"batch {b + 1}/{args.batches}: mean reward {reward_means[-1]:.4f}", flush=True)

    M = args.batches
    variance = {kind: float(((s2[kind] - s1[kind] ** 2 / M) / (M - 1)).sum()) for kind in kinds}
    mean_norm = {kind: float((s1[kind] / M).norm()) for kind in kinds}
    ratio = {kind: variance[kind] / variance["none"] for kind in kinds} if "none" in kinds else {}
    print(f"run: {label}; {M} minibatches of {P} prompts x {k} samples; {D:,} parameters")
    for kind in kinds:
        print(f"{kind:>14}: total variance {variance[kind]:.4e}  |mean g| {mean_norm[kind]:.4e}"
              + (f"  variance / none {ratio[kind]:.3g}" if ratio else ""))
    print(json.dumps({"run": label, "batches": M, "prompts": P, "k": k, "parameters": D, "device": str(device),
                      "mean_reward": sum(reward_means) / M, "total_variance": variance, "ratio_to_none": ratio,
                      "mean_gradient_norm": mean_norm, "seconds": round(time.time() - started, 1)}))


if __name__ == "__main__":
    main()
