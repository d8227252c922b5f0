"""`advgen adversarial`: policy-gradient GAN training of a pretrained generator, readable top to bottom.

Each step:
  1. sample k continuations of each of `prompts_per_step` train prompts at temperature 1 (on-policy);
  2. score them (realism = the discriminator's P(real), style, click; only weighted components) and mix
     them with rewards.RewardMixer;
  3. shape the reward per sequence: - kl_coef * (log p_policy - log p_init) + entropy_coef * (- log p_policy),
     both summed over the sampled tokens and detached: their REINFORCE estimators are the gradients of
     the KL to the frozen init generator and of the policy's entropy;
  4. advantages from a REINFORCE baseline (advgen.baselines);
  5. policy-gradient step on the generator: loss = -mean_i(A_i * sum_t log p(y_it)), skipped (and logged)
     when the loss or the gradient is not finite;
  6. `disc_steps` discriminator steps on real train texts against this step's samples;
  7. every `mle_every` steps, one teacher-forced maximum-likelihood step on a train batch;
  8. log to metrics.jsonl (and samples with their rewards to samples.jsonl).

The generator stays in eval mode (no dropout), so the log-probabilities the sampler draws with are the
ones the policy gradient differentiates. Prompts, samples and real-text batches depend only on (seed, step),
and the checkpoint holds both models, both optimizers, the mixer, the EMA and the RNG, so a resumed run
continues exactly.

Run folder: config.json (the init run's pretrain config at the top level, so models.load_run and
`advgen sample/evaluate/sweep` work on it, and this stage's config under "adversarial"), generator/ and
discriminator/ (HF format), checkpoint/state.pt, metrics.jsonl, samples.jsonl, summary.json.
"""
import json
import math
import random
import time
from dataclasses import asdict, fields
from pathlib import Path

import torch

from advgen import baselines, config, data, distributed, metrics, models, rewards, sampling, scorers
from advgen.config import AdversarialConfig, AdvgenError
from advgen.runlog import RunLog, load_state, progress, read_jsonl, save_state, truncate_jsonl, write_json


# ----------------------------------------------------------------------------------------------
# Inputs, each checked before the run folder exists


def load_init(init):
    """Pretrain run folder -> (pretrain config, generator, tokenizer), or one line saying what is wrong."""
    run = Path(init)
    if not run.is_dir():
        raise AdvgenError(f"--init {run}: no such run folder (write one with `advgen pretrain`)")
    try:
        cfg, model, tokenizer = models.load_run(run)
    except AdvgenError:
        raise
    except Exception as e:  # noqa: BLE001 - a broken generator folder becomes one line
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise AdvgenError(f"--init {run}: cannot load its generator ({reason})") from None
    sampling._check_supported(model)  # the sampler's model families, before anything is written
    return cfg, model, tokenizer


def load_config(run: Path) -> AdversarialConfig:
    """The adversarial config stored in a run folder's config.json (under "adversarial")."""
    try:
        stored = json.loads((run / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise AdvgenError(f"nothing to resume in {run}: cannot read config.json ({e})") from None
    if "adversarial" not in stored:
        raise AdvgenError(f"{run} is not an adversarial run (its config.json has no 'adversarial' section)")
    names = {f.name for f in fields(AdversarialConfig)}
    return AdversarialConfig(**{k: v for k, v in stored["adversarial"].items() if k in names})


def load_scorers(cfg: AdversarialConfig, device) -> dict:
    """{'style': Scorer, 'click': Scorer} for the components with a weight; each checked to be of its kind."""
    out = {}
    for kind in ("style", "click"):
        if getattr(cfg, f"w_{kind}") > 0:
            folder = getattr(cfg, f"{kind}_scorer")
            scorer = rewards.load_scorer(folder, device)
            if scorer.info.get("kind") != kind:
                raise AdvgenError(f"--{kind}-scorer {folder} is a {scorer.info.get('kind')!r} scorer, not a {kind} scorer")
            out[kind] = scorer
    return out


def style_targets(cfg: AdversarialConfig, init_cfg, scorer, records: list) -> list:
    """The style label each train record's samples are rewarded for: --style-target, or the record's own
    value of the scorer's label (which the init run must condition on, so the prompt states it)."""
    labels = scorer.info["labels"]
    if cfg.style_target:
        if cfg.style_target not in labels:
            raise AdvgenError(f"--style-target {cfg.style_target!r} is not a label of the style scorer ({', '.join(labels)})")
        return [cfg.style_target] * len(records)
    label = scorer.info["label"]
    column = "rating" if label == "sentiment" and "sentiment" not in records[0] else label
    if column not in init_cfg.condition:
        raise AdvgenError(f"the style scorer rewards '{label}', which the init run does not condition on (conditions: "
                          f"{', '.join(init_cfg.condition) or 'none'}): pass --style-target LABEL")
    targets = [scorers.label_of(r, "style", label) for r in records]
    unknown = sorted({t for t in targets if t is not None} - set(labels))
    if unknown:
        raise AdvgenError(f"the train split has {label} {unknown[0]!r}, not a label of the style scorer ({', '.join(labels)})")
    return targets


# ----------------------------------------------------------------------------------------------
# Small pure pieces of a step


def score(texts: list, targets: list, discriminator, scorers_: dict, cfg: AdversarialConfig) -> dict:
    """{component: (B,) reward} for the components with a weight > 0."""
    components = {}
    if cfg.w_realism > 0:
        components["realism"] = rewards.realism(discriminator, texts)
    if "style" in scorers_:
        components["style"] = rewards.style(scorers_["style"], texts, targets)
    if "click" in scorers_:
        components["click"] = rewards.click(scorers_["click"], texts)
    return components


def shaped(total: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, cfg: AdversarialConfig) -> tuple:
    """Mixed reward (B,) and sequence log-probs under the policy and the frozen init model (B,) ->
    (shaped reward, KL estimate log p - log p_ref, entropy estimate - log p), all detached."""
    kl, entropy = (logp - ref_logp).detach(), -logp.detach()
    return total - cfg.kl_coef * kl + cfg.entropy_coef * entropy, kl, entropy


def sequence_logprobs(model, prompts: list, samples: sampling.Samples, pad_id: int) -> torch.Tensor:
    """(B,) log-probability of each sample under `model`, summed over its tokens, on the CPU, no gradient."""
    with torch.no_grad():
        return sampling.teacher_forced_logprobs(model, prompts, samples, pad_id).sum(1).cpu()


def mean_of(dicts: list) -> dict:
    return {k: sum(d[k] for d in dicts) / len(dicts) for k in dicts[0]} if dicts else {}


def save_checkpoint(run: Path, generator, tokenizer, discriminator, gen_opt, disc_opt, mixer, state: dict) -> None:
    """generator/ and discriminator/ (HF format), then checkpoint/state.pt; each written atomically."""
    models.save(generator, tokenizer, run / "generator")
    rewards.save_scorer(discriminator, run / "discriminator")
    save_state(run / "checkpoint" / "state.pt",
               {"generator": generator.state_dict(), "discriminator": discriminator.model.state_dict(),
                "gen_optimizer": gen_opt.state_dict(), "disc_optimizer": disc_opt.state_dict(),
                "mixer": mixer.state_dict(), **state})


def load_checkpoint(path: Path, generator, discriminator, gen_opt, disc_opt, mixer) -> dict:
    ckpt = load_state(path)
    generator.load_state_dict(ckpt.pop("generator"))
    discriminator.model.load_state_dict(ckpt.pop("discriminator"))
    gen_opt.load_state_dict(ckpt.pop("gen_optimizer"))
    disc_opt.load_state_dict(ckpt.pop("disc_optimizer"))
    mixer.load_state_dict(ckpt.pop("mixer"))
    return ckpt


def warm_up(cfg: AdversarialConfig, init_cfg, generator, tokenizer, disc_step, disc_opt, train: list,
            prompt_of) -> dict:
    """Step 0: `disc_warmup` discriminator steps (at `disc_warmup_lr`) on real train texts against samples of
    the init generator, so that the first realism rewards, and the mixer's first spread, carry signal.
    Under torchrun each rank takes its slice of both. Returns the last step's disc/* metrics (means over
    the ranks); leaves the optimizer at `disc_lr`."""
    B = cfg.prompts_per_step * cfg.k
    for group in disc_opt.param_groups:
        group["lr"] = cfg.disc_warmup_lr or cfg.disc_lr
    bar = progress(cfg.disc_warmup, "discriminator warm-up", disable=not distributed.is_main())
    for j in range(cfg.disc_warmup):
        rows = distributed.shard(data.batch_at(list(range(len(train))), B, cfg.seed + 3, j))
        fake = sampling.decode(tokenizer, sampling.generate(
            generator, [prompt_of(train[i]) for i in rows], cfg.max_new_tokens, eos_id=tokenizer.eos_token_id,
            pad_id=tokenizer.pad_token_id, seed=cfg.seed * 1_000_003 + 500_000 + j,
            rows_of=(distributed.rank() * len(rows), B)))
        real = [str(r[init_cfg.field]).strip() for r in distributed.shard(data.batch_at(train, B, cfg.seed + 4, j))]
        metrics_ = distributed.mean_over_ranks(scorers.discriminator_step(disc_step, disc_opt, real, fake, cfg.clip))
        bar.update(1)
        bar.set_postfix(d_real=f"{metrics_['disc/d_real']:.3f}", d_fake=f"{metrics_['disc/d_fake']:.3f}")
    bar.close()
    for group in disc_opt.param_groups:
        group["lr"] = cfg.disc_lr
    return metrics_


# ----------------------------------------------------------------------------------------------
# The loop


def adversarial(cfg: AdversarialConfig, resume: bool = False) -> Path:
    started = time.time()
    run = Path(cfg.out)
    if resume:
        cfg = load_config(run)  # the run's own config, not the flags
    config.validate_adversarial(cfg)
    distributed.check_divides(cfg.prompts_per_step, "--prompts-per-step")  # a prompt's k samples stay on one rank
    if not resume and run.exists() and any(run.iterdir()):
        raise AdvgenError(f"run folder {run} already exists: pass --resume to continue it, or another --out")
    device = distributed.setup(models.resolve_device(cfg.device))
    main, world = distributed.is_main(), distributed.world_size()

    # Everything that can fail on bad input happens before the run folder is created.
    init_cfg, generator, tokenizer = load_init(cfg.init)
    reference, _ = models.load_generator(str(Path(cfg.init) / "generator"))  # frozen: the KL anchor
    cfg.discriminator = cfg.discriminator or init_cfg.discriminator
    cfg.max_new_tokens = cfg.max_new_tokens or init_cfg.max_target_tokens
    scorers_ = load_scorers(cfg, device)
    splits = data.load_splits(init_cfg)
    train = splits["train"]
    targets = [None] * len(train)
    if "style" in scorers_:
        targets = style_targets(cfg, init_cfg, scorers_["style"], train)
        train, targets = [r for r, t in zip(train, targets) if t is not None], [t for t in targets if t is not None]
        if not train:
            raise AdvgenError(f"no train row has a '{scorers_['style'].info['label']}' label for the style reward")
    discriminator = rewards.discriminator(cfg.discriminator, cfg.disc_max_length, cfg.disc_dropout, seed=cfg.seed)
    generator.to(device).eval()
    reference.to(device).eval().requires_grad_(False)
    discriminator.model.to(device)
    gen_opt = torch.optim.AdamW(models.param_groups(generator, cfg.weight_decay), lr=cfg.gen_lr)
    disc_opt = torch.optim.AdamW(models.param_groups(discriminator.model, cfg.weight_decay), lr=cfg.disc_lr)
    mixer = rewards.RewardMixer({"realism": cfg.w_realism, "style": cfg.w_style, "click": cfg.w_click})
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    P, k, N = cfg.prompts_per_step, cfg.k, cfg.max_new_tokens

    def prompt_of(record):
        return data.prompt_ids(tokenizer, record, init_cfg.field, init_cfg.condition, init_cfg.source,
                               init_cfg.max_source_tokens)

    ckpt_path = run / "checkpoint" / "state.pt"
    state = {"step": 0, "ema": None, "bad_steps": 0, "alarmed": False, "world_size": world}
    resumed = resume and ckpt_path.exists()
    if resumed:
        state = load_checkpoint(ckpt_path, generator, discriminator, gen_opt, disc_opt, mixer)
        distributed.check_resumable(state, run)
    else:
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
    # Under torchrun, DDP averages the ranks' gradients: policy(fn, *args) = fn(generator, *args).
    policy = distributed.data_parallel(generator, calls=True)
    disc_step = discriminator._replace(model=distributed.data_parallel(discriminator.model))
    distributed.barrier()  # every rank has checked the run folder before rank 0 writes into it
    if main:
        run.mkdir(parents=True, exist_ok=True)
        if not resumed:
            config.save(init_cfg, run / "config.json", adversarial=asdict(cfg))
        for name in ("metrics.jsonl", "samples.jsonl"):  # rows logged after the checkpoint are replayed
            truncate_jsonl(run / name, state["step"] if resumed else -1)

    warm = {}
    if state["step"] == 0 and cfg.disc_warmup:
        warm = warm_up(cfg, init_cfg, generator, tokenizer, disc_step, disc_opt, train, prompt_of)
    log = RunLog(run, cfg.max_steps, state["step"], desc=f"adversarial {run.name}", enabled=main)
    if state["step"] == 0:
        log.log(0, {"data/train_prompts": len(train), "data/batch": P * k, "data/max_new_tokens": N,
                    **{key.replace("disc/", "disc_warmup/"): v for key, v in warm.items()}})
    trainable = [p for p in generator.parameters() if p.requires_grad]
    while state["step"] < cfg.max_steps:
        step = state["step"]
        # 1. On-policy samples: k per prompt, contiguous (the layout baselines expects), seeded by (seed, step).
        #    Under torchrun each rank samples its slice of the prompts (b = B / world rows, from `first`) with
        #    the whole batch's draws; the statistics of steps 2-4 are taken over the gathered batch.
        rows = data.batch_at(list(range(len(train))), P, cfg.seed, step)
        mine = distributed.shard(rows)
        prompts = [prompt_of(train[i]) for i in mine for _ in range(k)]              # b = (P / world) * k
        batch_targets = [targets[i] for i in mine for _ in range(k)]
        first, b = distributed.rank() * len(prompts), len(prompts)
        samples = sampling.generate(generator, prompts, N, temperature=1.0, eos_id=eos, pad_id=pad,
                                    seed=cfg.seed * 1_000_003 + step, rows_of=(first, P * k))  # tokens, mask: (b, N)
        texts = sampling.decode(tokenizer, samples)

        # 2. Rewards of the weighted components, mixed. A non-finite score never reaches the mixer's statistics.
        components = {name: distributed.gather(r) for name, r in
                      score(texts, batch_targets, discriminator, scorers_, cfg).items()}     # (B,) each
        if all(bool(torch.isfinite(r).all()) for r in components.values()):
            total, _ = mixer(components)                                             # (B,)
        else:
            total = torch.full((len(texts),), math.nan)

        # 3. KL to the frozen init generator and entropy, folded into the reward per sequence.
        logp = policy(sampling.teacher_forced_logprobs, prompts, samples, pad).sum(1)  # (b,) with gradient
        ref_logp = distributed.gather(sequence_logprobs(reference, prompts, samples, pad))
        reward, kl, entropy = shaped(total, distributed.gather(logp.detach().cpu()), ref_logp, cfg)  # (B,)

        # 4. Advantages. Self-critical: the greedy decode of each prompt, scored without updating the mixer.
        greedy_rewards = None
        if cfg.baseline == "self-critical":
            greedy = sampling.generate(generator, prompts[::k], N, temperature=0.0, eos_id=eos, pad_id=pad)
            g_components = {name: distributed.gather(r) for name, r in score(
                sampling.decode(tokenizer, greedy), batch_targets[::k], discriminator, scorers_, cfg).items()}
            g_total, _ = mixer(g_components, update=False)
            greedy_rewards, _, _ = shaped(g_total, distributed.gather(sequence_logprobs(generator, prompts[::k], greedy, pad)),
                                          distributed.gather(sequence_logprobs(reference, prompts[::k], greedy, pad)), cfg)
        advantages, baseline, new_ema = baselines.advantages(reward, cfg.baseline, k=k, greedy_rewards=greedy_rewards,
                                                             ema=state["ema"], decay=cfg.ema_decay, whiten=cfg.whiten)

        # 5. Policy-gradient step; a non-finite loss or gradient skips it. The loss is -mean over the batch of
        #    A_i * log p(y_i); each rank's share is scaled by world / B, and DDP averages the ranks.
        loss = -(advantages[first:first + b].to(device) * logp).sum() * world / (P * k)
        loss.backward()
        loss = distributed.gather(loss.detach().reshape(1)).mean()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, cfg.clip if cfg.clip else math.inf))
        finite = math.isfinite(loss.item()) and math.isfinite(grad_norm)
        if finite:
            gen_opt.step()
            state["ema"], state["bad_steps"] = new_ema, 0
        else:
            state["bad_steps"] += 1
        gen_opt.zero_grad(set_to_none=True)

        # 6. Discriminator: real train texts (seeded by step) against this step's samples.
        disc_logs = []
        for j in range(cfg.disc_steps):
            real = [str(r[init_cfg.field]).strip() for r in distributed.shard(
                data.batch_at(train, P * k, cfg.seed + 1, step * cfg.disc_steps + j))]
            disc_logs.append(distributed.mean_over_ranks(
                scorers.discriminator_step(disc_step, disc_opt, real, texts, cfg.clip)))

        # 7. Optional maximum-likelihood step on a train batch, through the same optimizer.
        mle = {}
        if cfg.mle_every and (step + 1) % cfg.mle_every == 0:
            examples = data.encode(tokenizer, data.batch_at(train, init_cfg.batch_size, cfg.seed + 2, step // cfg.mle_every),
                                   init_cfg)
            n = sum(len(t) for _, t in examples)  # target tokens of the whole batch (as in pretrain.py)
            nll, _ = policy(models.target_nll, {key: v.to(device) for key, v in
                                                data.collate(distributed.shard(examples), pad).items()})
            (nll * world / n).backward()
            mle_norm = float(torch.nn.utils.clip_grad_norm_(trainable, cfg.clip if cfg.clip else math.inf))
            if math.isfinite(mle_norm):
                gen_opt.step()
            gen_opt.zero_grad(set_to_none=True)
            mle = {"losses/mle": distributed.gather(nll.detach().reshape(1)).sum().item() / n}

        # 8. Logging (rank 0), of the whole batch.
        texts = distributed.gather_objects(texts)
        distinct2 = metrics.distinct(texts, 2)[1]
        alarm = bool(cfg.collapse_distinct2) and distinct2 < cfg.collapse_distinct2
        state["step"] = step = step + 1
        log.log(step, {**{f"reward/{name}_{stat}": float(getattr(r, stat)()) for name, r in components.items()
                          for stat in ("mean", "std")},  # std: unbiased
                       "reward/total_mean": float(total.mean()), "reward/shaped_mean": float(reward.mean()),
                       "reward/advantage_std": float(advantages.std(correction=0)), "reward/baseline_mean": float(baseline.mean()),
                       "policy/kl": float(kl.mean()), "policy/entropy": float(entropy.mean()),
                       "policy/loss": loss.item(), "policy/grad_norm": grad_norm,
                       "policy/sample_tokens": float(distributed.gather(samples.mask.sum(1).float()).mean()),
                       **mean_of(disc_logs), **mle, "charts/distinct2": distinct2,
                       "charts/collapse_alarm": int(alarm), "charts/skipped": int(not finite)})
        log.bar.update(1)
        log.bar.set_postfix(reward=f"{float(total.mean()):.3f}", d_fake=f"{mean_of(disc_logs).get('disc/d_fake', math.nan):.3f}")
        if alarm and not state["alarmed"]:
            log.write(f"warning: step {step}: distinct-2 of the batch is {distinct2:.3f}, below --collapse-distinct2 "
                      f"{cfg.collapse_distinct2}: the generator may be collapsing onto a few outputs")
        state["alarmed"] = alarm
        if cfg.log_samples_every and step % cfg.log_samples_every == 0:
            extras = [{**{name: round(float(r[i]), 4) for name, r in components.items()},
                       "reward": round(float(reward[i]), 4), "advantage": round(float(advantages[i]), 4)}
                      for i in range(0, len(texts), k)]
            log.write_samples(step, [tokenizer.decode(prompt_of(train[i]), skip_special_tokens=True) for i in rows],
                              texts[::k], extras)
        if state["bad_steps"] >= cfg.nan_patience:
            log.close()
            raise AdvgenError(f"step {step}: the policy loss or gradient was not finite for {state['bad_steps']} "
                              f"consecutive steps (--nan-patience {cfg.nan_patience}); lower --gen-lr or resume from "
                              f"the last checkpoint in {run}")
        if main and (step % cfg.checkpoint_every == 0 or step == cfg.max_steps):
            save_checkpoint(run, generator, tokenizer, discriminator, gen_opt, disc_opt, mixer, state)
    log.close()
    distributed.cleanup()
    if not main:
        return run
    if not (run / "generator").is_dir():  # resumed after the last step: folders were written with that checkpoint
        save_checkpoint(run, generator, tokenizer, discriminator, gen_opt, disc_opt, mixer, state)

    summary = summarize(run, cfg, init_cfg, generator, reference, tokenizer, discriminator, splits["valid"], prompt_of)
    write_json(run / "summary.json", {**summary, "resumed": resumed, "wall_seconds": round(time.time() - started, 1)})
    return run


def summarize(run: Path, cfg: AdversarialConfig, init_cfg, generator, reference, tokenizer, discriminator,
              records: list, prompt_of) -> dict:
    """Start vs end of training from metrics.jsonl; the final generator against the init one on the same
    `eval_samples` prompts of the valid split and the same seed, at temperature 1: diversity, and how well the
    final discriminator tells their samples from the prompts' real texts."""
    steps = [r for r in read_jsonl(run / "metrics.jsonl") if "policy/loss" in r]
    window = max(1, min(10, len(steps) // 10))

    def mean(rows, key):
        values = [r[key] for r in rows if key in r]
        return sum(values) / len(values) if values else None

    chosen = [records[i % len(records)] for i in range(cfg.eval_samples)]
    prompts = [prompt_of(r) for r in chosen]
    real_p = rewards.realism(discriminator, [str(r[init_cfg.field]).strip() for r in chosen])  # the same prompts' true texts
    compared = {}
    for name, model in (("final", generator), ("init", reference)):
        batches = sampling.sample_batches(model, tokenizer, prompts, cfg.max_new_tokens, 64, cfg.seed, temperature=1.0)
        texts = [t for _, s in batches for t in sampling.decode(tokenizer, s)]
        fake_p = rewards.realism(discriminator, texts)
        compared[name] = {"distinct2": metrics.distinct(texts, 2)[1],
                          "self_bleu4": metrics.self_bleu(texts, 4) if len(texts) > 1 else None,
                          "d_real_final_discriminator": fake_p.mean().item(),
                          # accuracy of the final discriminator on these samples against as many real valid texts
                          "disc_accuracy_final_discriminator": ((real_p > 0.5).float().mean()
                                                                + (fake_p <= 0.5).float().mean()).item() / 2,
                          "example": texts[0]}
    return {"steps": len(steps), "window": window,
            "d_fake_start": mean(steps[:window], "disc/d_fake"), "d_fake_end": mean(steps[-window:], "disc/d_fake"),
            # the mixed reward is scaled by the components' running spreads, so compare the raw components too
            "mixed_reward_start": mean(steps[:window], "reward/total_mean"),
            "mixed_reward_end": mean(steps[-window:], "reward/total_mean"),
            **{f"{name}_{end}": mean(rows, f"reward/{name}_mean") for name in rewards.COMPONENTS
               for end, rows in (("start", steps[:window]), ("end", steps[-window:])) if f"reward/{name}_mean" in steps[0]},
            "disc_accuracy_final": steps[-1].get("disc/accuracy") if steps else None,
            "skipped_steps": sum(r["charts/skipped"] for r in steps),
            "collapse_alarm_steps": sum(r["charts/collapse_alarm"] for r in steps),
            "eval_samples": cfg.eval_samples, **{f"{name}": v for name, v in compared.items()}}
