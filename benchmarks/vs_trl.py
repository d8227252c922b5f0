"""advgen's adversarial step against TRL's RLOOTrainer (the peer a user would pick instead), side by side, in one run.

Rows, for each policy, interleaved step by step (a TRL step, then one of each advgen row), warm-up steps dropped:
    trl-rloo      RLOOTrainer.train(): its optimizer steps, one completion batch each
    advgen        advgen.adversarial.train_step with --disc-steps 0: the reward model frozen, as in TRL
    advgen+disc   the same with one discriminator step per generator step: a reward that keeps learning, which
                  TRL's trainers do not offer
Policies: 'quick' (the quick preset's scratch GPT-2, 8,000-token corpus tokenizer) and 'smollm2' (the packaged
SmolLM2-135M), each from an `advgen pretrain` run of --init-steps steps on the embedded review titles (or a run
folder given with --quick-init / --smollm2-init); 'tiny' is a 2-layer GPT-2 for the tests.

Made equal: the policy weights (each row loads the same init run), the reward (one MiniLM realism classifier with a
2-way head, frozen, which TRL's reward function and the frozen advgen row both call: P(real) of the decoded
completion), the prompts (TRL's dataset is
advgen's prompt rows for each step, in order, not shuffled; each prompt's ids round-trip through the tokenizer,
checked), k samples per prompt (RLOO's num_generations), at most --new-tokens new tokens (each sample
stops at EOS; the tokens per sample of each row are reported), temperature 1 with no top-k or
top-p, the KL coefficient (a penalty of beta * sum_t (log p - log p_ref) on the reward, as both do), the
leave-one-out baseline without whitening, AdamW with the same learning rate, betas, eps and weight decay at a
constant schedule, gradient clipping at the same norm, fp32 (TRL's defaults bf16=True and
gradient_checkpointing=True are for GPUs and are turned off), dropout off, one optimizer step per batch of
completions (steps_per_generation = gradient_accumulation_steps = num_iterations = 1), the same threads.

Differences that remain (the APIs allow no closer match):
- TRL runs one more forward of the policy (old_per_token_logps, no gradient) for its importance ratio, which is 1
  with num_iterations=1; advgen differentiates log p directly (the same gradient).
- TRL samples with HF `generate` (dynamic KV cache); advgen with its own batched sampler (advgen.sampling).
- TRL's training forward also computes per-token entropies (a metric) through its chunked fused LM head.
- advgen scales each reward component by its running spread (rewards.RewardMixer) before the KL term; TRL uses the
  raw reward. This changes the advantages' scale, not the cost.
- advgen decodes every completion for its logs and its collapse alarm; TRL decodes for its reward functions.
Memory: per row, the most resident memory a measured step adds to what the process held when it began (CPU:
VmHWM after a reset, in bytes of RSS; CUDA: max allocated). On CPU one process cannot separate the rows (a step can
reuse memory another row's step freed and glibc kept), so each row is measured again in a process of its own
(`--rows ROW`, one warm-up and one measured step): its step memory and the process's peak, weights, optimizer states
and libraries included.

    python benchmarks/vs_trl.py [--policies quick,smollm2] [--steps 3] [--warmup 1] [--device cpu]

Prints one line per row, the per-stage times, the ratios, and one JSON object on the last line.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from advgen import adversarial, data, distributed, models, rewards, runs, scorers, seeds
from advgen.config import AdversarialConfig
from common import peak_memory_reset, peak_memory_since, resident, timed

ROOT = Path(__file__).resolve().parents[1]
# `advgen pretrain` flags of each policy's init run (then --max-steps --init-steps and no evaluation to speak of).
POLICIES = {
    "quick": ["--preset", "quick"],
    "smollm2": ["--generator", "smollm2-135m", "--field", "title", "--max-target-tokens", "24", "--batch-size", "8"],
    "tiny": ["--generator", "scratch:gpt2-tiny", "--tokenizer", "corpus:300", "--max-target-tokens", "8"],
}
ROWS = ("trl-rloo", "advgen", "advgen+disc")


class Stages:
    """Wall time per stage of the step in progress: `wrap(fn, name)` returns fn timed into `name` (a string, or a
    function of no arguments giving one), the GPU synchronised on both sides."""

    def __init__(self, device):
        self.device, self.now = device, defaultdict(float)

    def wrap(self, fn, name):
        def timed_call(*args, **kwargs):
            out, seconds = timed(lambda: fn(*args, **kwargs), self.device)
            self.now[name() if callable(name) else name] += seconds
            return out
        return timed_call

    def take(self, total: float) -> dict:
        """The step's stage times, with what no wrapper saw (the backward pass among it) as 'backward and rest'."""
        out = {**self.now, "backward and rest": total - sum(self.now.values())}
        self.now.clear()
        return out


PROCESS_PEAK = [0]  # the most resident memory of this process (CPU), kept across the per-step resets


def memory_reset(device):
    """common.peak_memory_reset, first keeping the process's peak resident memory so far."""
    if device.type == "cpu":
        PROCESS_PEAK[0] = max(PROCESS_PEAK[0], resident("VmHWM"))
    return peak_memory_reset(device)


def forward_kind() -> str:
    return "policy forward (grad)" if torch.is_grad_enabled() else "forward (no grad)"


def init_run(policy: str, given: str, steps: int, work: Path) -> Path:
    """The policy's pretrain run: `given`, or a fresh `advgen pretrain` of `steps` steps under `work`."""
    if given:
        return Path(given)
    out = work / f"init-{policy}"
    command = [sys.executable, "-m", "advgen", "pretrain", *POLICIES[policy], "--max-steps", str(steps),
               "--warmup-steps", "0", "--eval-every", str(steps), "--eval-batches", "1", "--test-batches", "1",
               "--num-samples", "1", "--out", str(out)]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return out


def advgen_row(init: Path, args, disc_steps: int, reward=None):
    """(config, models, task, state) of an advgen row, built as `advgen adversarial` builds them; `reward`, when
    given, replaces its discriminator (the frozen row shares TRL's reward model)."""
    cfg = AdversarialConfig(init=str(init), discriminator="minilm-l6", disc_max_length=64, disc_steps=disc_steps,
                            disc_warmup=0, prompts_per_step=args.prompts, k=args.k, max_new_tokens=args.new_tokens,
                            gen_lr=args.lr, disc_lr=1e-5, kl_coef=args.kl, baseline="loo", w_realism=1.0,
                            max_steps=args.warmup + args.steps, seed=0, device=args.device)
    run = adversarial.load_init(cfg.init)
    task = adversarial.load_task(cfg, run.cfg, {})
    m = adversarial.build_models(cfg, run, {}, torch.device(args.device))
    m.discriminator = reward or m.discriminator
    m.policy = distributed.data_parallel(m.generator, calls=True)
    m.disc_step = m.discriminator
    return cfg, m, task, adversarial.initial_state()


def trl_prompts(init: Path, args) -> tuple:
    """advgen's prompts of every step, as text, in order: TRL's dataset, so that its step s has advgen's prompts of
    step s (data.batch_at's stream "prompts", as adversarial.rollout draws them). Each text must tokenize back to
    advgen's prompt ids. -> (texts, their ids)."""
    run = runs.load(init)
    train = data.load_splits(run.cfg)["train"]
    texts, ids_of = [], []
    for step in range(args.warmup + args.steps):
        for i in data.batch_at(list(range(len(train))), args.prompts, 0, step, "prompts"):
            ids = runs.prompt(run.tokenizer, run.cfg, train[i])
            text = run.tokenizer.decode(ids)
            if run.tokenizer(text=text)["input_ids"] != ids:
                sys.exit(f"vs_trl: a prompt does not round-trip through the tokenizer ({ids[:8]}...): TRL would see "
                         "other prompts than advgen")
            texts.append(text)
            ids_of.append(ids)
    return texts, ids_of


def trl_trainer(init: Path, reward, prompts: list, args, work: Path, on_step):
    """RLOOTrainer on the init run's generator, configured like the advgen rows (see the docstring)."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    class Interleave(TrainerCallback):
        def on_step_begin(self, *_, **__):
            on_step("begin")

        def on_pre_optimizer_step(self, *_, **__):
            on_step("optimizer-begin")

        def on_optimizer_step(self, *_, **__):
            on_step("optimizer-end")

        def on_step_end(self, *_, **__):
            on_step("end")

    def realism(prompts, completions, **_):
        return rewards.realism(reward, completions).tolist()

    policy, tokenizer = models.load_generator(str(init / "generator"))
    config = RLOOConfig(
        output_dir=str(work / "trl"), per_device_train_batch_size=args.prompts * args.k, num_generations=args.k,
        gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1, max_steps=args.warmup + args.steps,
        max_completion_length=args.new_tokens, temperature=1.0, top_p=1.0, top_k=0, repetition_penalty=1.0,
        beta=args.kl, normalize_advantages=False, learning_rate=args.lr, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, optim="adamw_torch", adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
        max_grad_norm=1.0, bf16=False, fp16=False, gradient_checkpointing=False, disable_dropout=True,
        shuffle_dataset=False, use_cpu=args.device == "cpu", seed=0, report_to="none", save_strategy="no",
        logging_steps=10**6, disable_tqdm=True, log_completions=False, dataloader_num_workers=0)
    return RLOOTrainer(model=policy, reward_funcs=[realism], args=config, processing_class=tokenizer,
                       train_dataset=Dataset.from_dict({"prompt": prompts}), callbacks=[Interleave()])


def instrument(stages: Stages) -> None:
    """Time advgen's stages where its step calls them (once per process: wrappers of wrappers would count twice)."""
    adversarial.rollout = stages.wrap(adversarial.rollout, "sample")
    adversarial.score = stages.wrap(adversarial.score, "score")
    adversarial.discriminator_steps = stages.wrap(adversarial.discriminator_steps, "discriminator step")
    models.teacher_forced_logprobs = stages.wrap(models.teacher_forced_logprobs, forward_kind)


def bench_policy(init: Path, args, work: Path, stages: Stages, wanted: list) -> dict:
    """The `wanted` rows of one policy, interleaved: TRL's train() drives, and after each of its steps every advgen
    row takes one step (without the TRL row, the advgen rows take turns).
    -> {row: [{"seconds", "samples", "tokens", "memory", "stages"} per timed step]}."""
    device = stages.device
    reward = scorers.new_discriminator("minilm-l6", 64, seed=seeds.derive(0, "disc-head"))  # build_models' draw
    reward.model.to(device).eval().requires_grad_(False)  # the frozen reward of the TRL row and the advgen row
    rows = {row: advgen_row(init, args, int(row == "advgen+disc"), reward if row == "advgen" else None)
            for row in wanted if row != "trl-rloo"}
    done = {row: [] for row in wanted}
    for cfg, m, _, _ in rows.values():
        m.gen_opt.step = stages.wrap(m.gen_opt.step, "optimizer")
    clock = {}

    def advgen_step(row):
        cfg, m, task, state = rows[row]
        base = memory_reset(device)
        ro, seconds = timed(lambda: adversarial.train_step(cfg, m, task, state)[0], device)
        done[row].append({"seconds": seconds, "samples": len(ro.texts), "tokens": int(ro.samples.mask.sum()),
                          "memory": peak_memory_since(device, base), "stages": stages.take(seconds)})

    if "trl-rloo" not in wanted:
        for _ in range(args.warmup + args.steps):
            for row in rows:
                advgen_step(row)
        return {row: steps[args.warmup:] for row, steps in done.items()}
    prompts, prompt_ids = trl_prompts(init, args)

    def on_step(event):
        if event == "begin":
            clock["memory"], clock["start"] = memory_reset(device), time.perf_counter()
        elif event == "optimizer-begin":
            clock["optimizer"] = time.perf_counter()
        elif event == "optimizer-end":
            stages.now["optimizer"] += time.perf_counter() - clock["optimizer"]
        else:
            seconds = time.perf_counter() - clock["start"]
            done["trl-rloo"].append({"seconds": seconds, "samples": args.prompts * args.k, "tokens": clock.pop("tokens"),
                                     "memory": peak_memory_since(device, clock["memory"]), "stages": stages.take(seconds)})
            for row in rows:
                advgen_step(row)

    trainer = trl_trainer(init, reward, prompts, args, work, on_step)
    generate = trainer._generate_single_turn

    def counted(ids, *a, **kw):  # TRL's completion ids, cut at EOS: the step's sampled tokens
        P, first = args.prompts, len(done["trl-rloo"]) * args.prompts
        if ids != [p for p in prompt_ids[first:first + P] for _ in range(args.k)]:
            sys.exit("vs_trl: TRL's step sampled other prompts than advgen's (or not k contiguous copies of each)")
        ids = generate(ids, *a, **kw)
        clock["tokens"] = sum(map(len, ids))
        return ids
    trainer._generate_single_turn = stages.wrap(counted, "sample")
    trainer._calculate_rewards = stages.wrap(trainer._calculate_rewards, "score")
    trainer._get_per_token_logps_and_entropies = stages.wrap(trainer._get_per_token_logps_and_entropies, forward_kind)
    trainer.train()
    return {row: steps[args.warmup:] for row, steps in done.items()}


def summary(steps: list) -> dict:
    seconds = sum(s["seconds"] for s in steps)
    stage_names = sorted({k for s in steps for k in s["stages"]})
    return {"samples_per_s": sum(s["samples"] for s in steps) / seconds, "tokens_per_s": sum(s["tokens"] for s in steps) / seconds,
            "step_s": seconds / len(steps), "tokens_per_sample": sum(s["tokens"] for s in steps) / sum(s["samples"] for s in steps),
            "peak_step_memory_mb": max(s["memory"] for s in steps) / 2**20,
            "stages_s": {k: sum(s["stages"].get(k, 0.0) for s in steps) / len(steps) for k in stage_names}}


def alone(policy: str, init: Path, row: str, args) -> dict:
    """The row's memory measured in a process of its own (CPU: in one process, a step can reuse what another row's
    step freed, and glibc keeps, so only a process per row separates them): {"peak_step_memory_mb",
    "process_peak_mb"}, after one warm-up step and one measured step."""
    command = [sys.executable, __file__, "--policies", policy, f"--{policy}-init", str(init), "--rows", row,
               "--steps", "1", "--warmup", "1", "--prompts", str(args.prompts), "--k", str(args.k), "--new-tokens",
               str(args.new_tokens), "--kl", str(args.kl), "--lr", str(args.lr), "--device", args.device]
    out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    measured = json.loads(out.strip().splitlines()[-1])["policies"][policy]["rows"][row]
    return {key: measured[key] for key in ("peak_step_memory_mb", "process_peak_mb")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", default="quick,smollm2", help=f"comma-separated, of {', '.join(POLICIES)}")
    for policy in POLICIES:
        ap.add_argument(f"--{policy}-init", default="", help=f"a pretrain run folder for the {policy} policy "
                                                             "(default: a fresh one)")
    ap.add_argument("--rows", default=",".join(ROWS), help="comma-separated, of " + ", ".join(ROWS))
    ap.add_argument("--init-steps", type=int, default=20, help="pretrain steps of a fresh init run")
    ap.add_argument("--prompts", type=int, default=16, help="prompts per step")
    ap.add_argument("--k", type=int, default=4, help="samples per prompt")
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--kl", type=float, default=0.05, help="KL coefficient (TRL's beta)")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per row")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per row first")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    policies = [p for p in args.policies.split(",") if p]
    wanted = [r for r in ROWS if r in args.rows.split(",")]
    if sorted(set(policies) - set(POLICIES)) or not policies or not wanted or args.steps < 1 or args.warmup < 0 \
            or args.k < 2:
        ap.error(f"--policies of {', '.join(POLICIES)} (got {args.policies}), --rows of {', '.join(ROWS)} "
                 f"(got {args.rows}); --steps >= 1, --warmup >= 0, --k >= 2 (leave-one-out)")
    from transformers.utils import logging
    logging.set_verbosity_error()
    device = torch.device(args.device)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else
              f"cpu x{torch.get_num_threads()} threads", "prompts": args.prompts, "k": args.k,
              "new_tokens": args.new_tokens, "steps": args.steps, "warmup": args.warmup, "policies": {}}
    stages = Stages(device)
    instrument(stages)
    with tempfile.TemporaryDirectory() as tmp:
        for policy in policies:
            given = getattr(args, f"{policy.replace('-', '_')}_init")
            init = init_run(policy, given, args.init_steps, Path(tmp))
            rows = {row: summary(steps) for row, steps in bench_policy(init, args, Path(tmp), stages, wanted).items()}
            for row in rows:  # a process's peak is one row's only when the process ran that row alone
                rows[row]["process_peak_mb"] = max(PROCESS_PEAK[0], resident("VmHWM")) / 2**20 \
                    if device.type == "cpu" and len(rows) == 1 else None
                if device.type == "cpu" and len(rows) > 1:
                    rows[row]["memory_alone"] = alone(policy, init, row, args)
            result["policies"][policy] = report = {"init": given or f"fresh: advgen pretrain, {args.init_steps} steps",
                                                   "rows": rows}
            if "trl-rloo" in rows:
                trl = rows["trl-rloo"]
                step_memory = lambda r: (r.get("memory_alone") or r)["peak_step_memory_mb"]  # noqa: E731
                for row in rows:
                    if row != "trl-rloo":
                        report[f"speedup/{row}"] = rows[row]["samples_per_s"] / trl["samples_per_s"]
                        report[f"step_memory_ratio/{row}"] = step_memory(rows[row]) / max(step_memory(trl), 1e-9)
            for row, r in rows.items():
                memory = r.get("memory_alone") or r
                print(f"{policy:8s} {row:12s} {r['samples_per_s']:8.2f} samples/s {r['tokens_per_s']:9.1f} tokens/s "
                      f"{r['step_s']:7.2f} s/step {r['tokens_per_sample']:5.1f} tokens/sample   step memory "
                      f"+{memory['peak_step_memory_mb']:7.1f} MB" + (f", process peak {memory['process_peak_mb']:7.1f} MB"
                                                                    if memory["process_peak_mb"] else ""))
                print("         " + "  ".join(f"{k} {v:.2f}s" for k, v in r["stages_s"].items()))
            for key, value in report.items():
                if key.startswith(("speedup", "step_memory_ratio")):
                    print(f"{policy:8s} {key:32s} {value:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
