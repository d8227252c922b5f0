"""The sampler against HF: greedy decoding, logits processors, empirical distributions, log-probs."""
import json
import re

import pytest
import torch
from click.testing import CliRunner
from scipy.stats import chisquare
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.generation.logits_process import (MinPLogitsWarper, RepetitionPenaltyLogitsProcessor,
                                                    TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

from advgen import kernels, models, sampling
from advgen.errors import AdvgenError
from advgen.cli import main

PROMPTS = [[5, 6, 7], [8, 9, 10, 11, 12, 13, 14], [15], [16, 17, 18, 19]]  # uneven: left padding matters
PAD, EOS = 0, 3


def tiny(kind, vocab=1000):
    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = GPT2Config(n_layer=2, n_head=4, n_embd=64, vocab_size=vocab, n_positions=128,
                         bos_token_id=1, eos_token_id=EOS)
        return GPT2LMHeadModel(cfg).eval()
    cfg = LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=64,
                      intermediate_size=128, vocab_size=vocab, max_position_embeddings=128,
                      bos_token_id=1, eos_token_id=EOS, pad_token_id=PAD)
    return LlamaForCausalLM(cfg).eval()


def hf_generate(model, prompts, pad_id=PAD, **kwargs):
    ids, valid = sampling.left_pad(prompts, pad_id, "cpu")
    out = model.generate(input_ids=ids, attention_mask=valid.long(), pad_token_id=pad_id, **kwargs)
    return out[:, ids.shape[1]:]


def hf_logprobs(logits, input_ids=None, temperature=1.0, top_k=0, top_p=1.0, min_p=None, penalty=1.0):
    """HF's processors in `generate`'s order, then log-softmax."""
    scores = logits.clone()
    if penalty != 1.0:
        scores = RepetitionPenaltyLogitsProcessor(penalty)(input_ids, scores)
    if temperature != 1.0:
        scores = TemperatureLogitsWarper(temperature)(None, scores)
    if top_k:
        scores = TopKLogitsWarper(top_k)(None, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    if min_p is not None:
        scores = MinPLogitsWarper(min_p)(None, scores)
    return scores.log_softmax(-1)


def filtered_weights(logits, temperature=None, top_k=0, top_p=None, min_p=None, k_per_row=None):
    """The whole filtered sampling distribution of advgen's kernels, unnormalised: (weights with zeros where
    filtered out, ids), as kernels.candidates describes them. The sampler never builds it (it draws by rejection)."""
    weights, ids = kernels.candidates(logits, temperature, top_k, k_per_row)
    floor, _ = kernels.floor_of(weights, top_p, min_p)
    return weights if floor is None else weights * (weights >= floor), ids


def our_logprobs(logits, temperature=1.0, top_k=0, top_p=None, min_p=None, k_per_row=None):
    """advgen's filtered distribution scattered back to the vocabulary, as log-probabilities."""
    B, V = logits.shape
    row = lambda v: None if v is None else kernels.per_row(v, B, "cpu")
    weights, ids = filtered_weights(logits, row(temperature), top_k, row(top_p), row(min_p), k_per_row)
    full = weights if ids is None else torch.zeros(B, V).scatter_(1, ids, weights)
    return (full / full.sum(-1, keepdim=True)).log()


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_greedy_equals_hf_generate_on_uneven_left_padded_prompts(kind):
    model = tiny(kind)
    ours = sampling.generate(model, PROMPTS, 24, temperature=0, pad_id=PAD)
    theirs = hf_generate(model, PROMPTS, do_sample=False, max_new_tokens=24, eos_token_id=None)
    assert torch.equal(ours.tokens, theirs)
    assert ours.mask.all() and (ours.logprobs == 0).all()


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_greedy_with_eos_and_repetition_penalty_equals_hf(kind):
    model = tiny(kind, vocab=12)  # a tiny vocabulary makes EOS and repeats frequent
    prompts = [[5, 6, 7], [8, 9, 10, 11, 4], [2], [11, 4, 6, 7]]
    ours = sampling.generate(model, prompts, 16, temperature=0, repetition_penalty=1.3, eos_id=EOS, pad_id=PAD)
    theirs = hf_generate(model, prompts, do_sample=False, max_new_tokens=16, eos_token_id=EOS, repetition_penalty=1.3)
    assert torch.equal(ours.tokens[:, :theirs.shape[1]], theirs)
    for row, mask in zip(ours.tokens.tolist(), ours.mask.tolist()):
        n = sum(mask)
        assert mask == [True] * n + [False] * (len(mask) - n)  # generated, then masked
        assert EOS not in row[:n - 1] and (n == len(row) or row[n - 1] == EOS)


def test_smollm2_greedy_equals_hf_generate():
    model, tokenizer = models.load_generator("smollm2-135m")
    prompts = [tokenizer("Summer dress, light and")["input_ids"], tokenizer("The fit")["input_ids"]]
    ours = sampling.generate(model, prompts, 12, temperature=0, pad_id=tokenizer.pad_token_id)
    theirs = hf_generate(model, prompts, tokenizer.pad_token_id, do_sample=False, max_new_tokens=12, eos_token_id=None)
    assert torch.equal(ours.tokens, theirs)


@pytest.mark.parametrize("vocab", [1000, 50257])  # below and above the size where top-p stops sorting
@pytest.mark.parametrize("scale", [0.5, 4.0])   # flat (random GPT-2-like) and peaked logits
def test_filters_equal_hf_logits_processors(vocab, scale):
    torch.manual_seed(vocab)
    logits = torch.randn(8, vocab) * scale
    cases = [dict(temperature=0.7), dict(top_k=50), dict(top_p=0.9), dict(min_p=0.05),
             dict(temperature=1.3, top_k=40, top_p=0.8, min_p=0.1), dict(temperature=0.8, top_p=0.95, min_p=0.02)]
    for case in cases:
        ours, theirs = our_logprobs(logits, **case), hf_logprobs(logits, **case)
        kept, kept_hf = ours > float("-inf"), theirs > float("-inf")
        # HF's float32 cumulative sum and advgen's histograms add in different orders, so a token whose
        # cumulative mass is within rounding of the cut may switch sides: at most one per row (a second one
        # would need two tokens within ~1e-8 of the cut). A switched token moves its own mass, whatever it is.
        flipped = kept != kept_hf
        assert flipped.sum(-1).max() <= 1, case
        # The rest is rounding. Both sides round a few times at the size of the scaled logits M = max|z| / T
        # (advgen: exp((z - max) / T), a sum, a log; HF: z / T, log_softmax) and at the size of the log-prob:
        # |difference| <= k * eps * (M + |log p|) with k about 1-1.5 observed; the bounds take k = 8.
        eps, M = torch.finfo(torch.float32).eps, float(logits.abs().max()) / min(case.get("temperature", 1.0), 1.0)
        moved = (ours.exp() * flipped).sum(-1) + (theirs.exp() * flipped).sum(-1)
        tv = 0.5 * (ours.exp().nan_to_num() - theirs.exp().nan_to_num()).abs().sum(-1)
        entropy = -(theirs.exp() * theirs.nan_to_num(neginf=0.0)).sum(-1)
        assert (tv - moved <= 0.5 * 8 * eps * (M + entropy) + 1e-7).all(), case
        same = (kept == kept_hf).all(-1)
        torch.testing.assert_close(ours[same][kept[same]], theirs[same][kept[same]], rtol=8 * eps, atol=8 * eps * M)


@pytest.mark.parametrize("sync_free", [True, False])  # second histogram (CUDA) / gathered bucket members (CPU)
def test_nucleus_floor_equals_sorted_nucleus(sync_free):
    torch.manual_seed(0)
    for scale in (0.3, 1.0, 3.0, 10.0):
        weights = (torch.randn(32, 60000) * scale).softmax(-1)
        weights = weights / weights.amax(-1, keepdim=True)
        top_p = torch.rand(32, 1) * 0.98 + 0.01
        top_p[:2] = torch.tensor([[1.0], [1e-4]])  # keep everything; keep the fewest
        asc, order = weights.double().sort(-1)  # the definition, summed in float64
        by_sort = torch.zeros_like(asc, dtype=torch.bool).scatter_(
            -1, order, asc.cumsum(-1) > (1 - top_p.double()) * asc.sum(-1, keepdim=True)) | (top_p >= 1)
        floor, kept = kernels.nucleus(weights, top_p, sync_free)
        keep = weights >= floor
        assert (by_sort != keep).sum(-1).max() <= 1, scale  # rounding at the cut only
        torch.testing.assert_close(kept, (weights * keep).sum(-1, keepdim=True), rtol=2e-5, atol=0)
    ties = torch.ones(2, 5000)  # the cut falls among equal weights: all of them stay, whatever a sort's order
    ties[:, :100] = 0.5
    floor, kept = kernels.nucleus(ties, torch.tensor([[0.9], [0.99]]), sync_free)
    assert (ties >= floor).sum(-1).tolist() == [4900, 5000] and kept.squeeze(1).tolist() == [4900, 4950]


def test_repetition_penalty_equals_hf():
    torch.manual_seed(1)
    logits = torch.randn(4, 300)
    seen_ids = torch.randint(0, 300, (4, 20))
    seen = torch.zeros(4, 300, dtype=torch.bool).scatter_(1, seen_ids, True)
    ours = kernels.penalize_repeats(logits, seen, kernels.per_row([1.2, 1.5, 0.8, 1.0], 4, "cpu"))
    for r, pen in enumerate([1.2, 1.5, 0.8, 1.0]):
        theirs = RepetitionPenaltyLogitsProcessor(pen)(seen_ids[r:r + 1], logits[r:r + 1].clone())
        torch.testing.assert_close(ours[r:r + 1], theirs, atol=0, rtol=0)


def test_per_row_controls_equal_scalar_calls():
    """One batch sweeping temperature and top-k gives each row what a scalar call gives it."""
    model = tiny("gpt2")
    prompts = PROMPTS * 2
    temps, ks = [0.5, 1.5, 0.0, 1.0] * 2, [0, 0, 0, 0, 20, 20, 20, 20]
    swept = sampling.generate(model, prompts, 10, temperature=temps, top_k=ks, seed=3, pad_id=PAD)
    for r, (t, k) in enumerate(zip(temps, ks)):
        alone = sampling.generate(model, prompts, 10, temperature=t, top_k=k, seed=3, pad_id=PAD)
        assert torch.equal(swept.tokens[r], alone.tokens[r]), (t, k)
        torch.testing.assert_close(swept.logprobs[r], alone.logprobs[r])


@pytest.mark.parametrize("sync_free", [True, False])
@pytest.mark.parametrize("vocab,case", [
    (30, dict(temperature=0.7, top_k=12, top_p=0.9)),
    (30, dict(min_p=0.1, temperature=1.5)),
    (5000, dict(top_p=0.6)),      # the histogram nucleus
    (5000, dict(min_p=0.3)),      # few proposals land at or above the floor: most rows take the direct draw
    (5000, dict()),
])
def test_draws_follow_the_filtered_distribution(vocab, case, sync_free):
    torch.manual_seed(2)
    logits = torch.randn(1, vocab) * (3.0 if vocab > 100 else 1.0)
    row = lambda v: None if v is None else kernels.per_row(v, 1, "cpu")
    weights, ids = kernels.candidates(logits, row(case.get("temperature")), case.get("top_k", 0))
    floor, kept = kernels.floor_of(weights, row(case.get("top_p")), row(case.get("min_p")), sync_free)
    n, g = 40_000, torch.Generator().manual_seed(0)
    draws = [kernels.draw(weights.expand(5000, -1), torch.rand(5000, kernels.PROPOSALS + 1, generator=g),
                           None if floor is None else floor.expand(5000, -1),
                           None if kept is None else kept.expand(5000, -1), sync_free) for _ in range(n // 5000)]
    index, logprobs, _ = (torch.cat(d) for d in zip(*draws))
    tokens = index if ids is None else ids[0, index]
    expected = hf_logprobs(logits, **case).exp()[0]
    support = expected > 0
    assert support[tokens].all(), "drew a filtered-out token"
    counts = torch.bincount(tokens, minlength=vocab)[support].double()
    probs = expected[support].double()
    assert chisquare(counts, probs / probs.sum() * n).pvalue > 1e-3
    # 1e-5 is about 8 float32 ulp at the scaled logits' size (|z| / T ~ 12); rtol 8 eps for draws deep in the tail
    torch.testing.assert_close(logprobs, expected[tokens].log(), atol=1e-5, rtol=8 * torch.finfo(torch.float32).eps)


def test_direct_draw_takes_over_when_every_proposal_is_filtered_out():
    """A floor above all but one token: the proposals almost never reach it, the direct draw does."""
    weights = torch.full((64, 5000), 0.01)
    weights[:, 1234] = 1.0
    uniforms = torch.rand(64, kernels.PROPOSALS + 1, generator=torch.Generator().manual_seed(0))
    for sync_free in (True, False):
        index, logprobs, _ = kernels.draw(weights, uniforms, torch.full((64, 1), 0.5), torch.ones(64, 1), sync_free)
        assert (index == 1234).all() and (logprobs == 0).all()


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_logprobs_equal_teacher_forced_forward(kind):
    model = tiny(kind, vocab=50)
    s = sampling.generate(model, PROMPTS * 4, 20, temperature=0.9, top_k=30, top_p=0.9, eos_id=EOS, pad_id=PAD, seed=1)
    assert not s.mask.all(), "some rows should stop at EOS"
    with torch.no_grad():
        forced = models.teacher_forced_logprobs(model, PROMPTS * 4, s, pad_id=PAD)
    assert (forced - s.model_logprobs).abs().max() <= 1e-4
    # under the sampling distribution: the filtered teacher-forced logits give the same numbers
    ids, valid = sampling.left_pad(PROMPTS * 4, PAD, "cpu")
    full = torch.cat([ids, s.tokens], 1)
    attention = torch.cat([valid, s.mask], 1)
    with torch.no_grad():
        logits = model(input_ids=full, attention_mask=attention.long(),
                       position_ids=sampling.positions(attention)).logits[:, ids.shape[1] - 1:-1]
    filtered = hf_logprobs(logits.flatten(0, 1), temperature=0.9, top_k=30, top_p=0.9).view_as(logits)
    expected = torch.where(s.mask, filtered.gather(2, s.tokens[:, :, None]).squeeze(2), 0.0)
    assert (expected - s.logprobs).abs().max() <= 1e-4


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_teacher_forcing_in_length_sorted_chunks_equals_one_whole_batch_forward(kind):
    """Chunks of 3 rows, each padded to its own longest prompt and sample, against one chunk of all 16 rows (the
    whole batch padded to its longest): the same log-probabilities and gradients, up to float32 rounding of
    differently shaped matmuls (|logp| < 10: 1e-5 is some tens of float32 ulps)."""
    model = tiny(kind, vocab=50)
    s = sampling.generate(model, PROMPTS * 4, 20, eos_id=EOS, pad_id=PAD, seed=3)
    assert len(set(s.mask.sum(1).tolist())) > 2, "the rows should stop at different lengths"
    values, grads = [], []
    for rows in (3, 16):
        model.zero_grad()
        logp = models.teacher_forced_logprobs(model, PROMPTS * 4, s, pad_id=PAD, rows_per_chunk=rows)
        (logp.sum(1) * torch.linspace(-1, 1, 16)).sum().backward()
        values.append(logp.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert (values[0][~s.mask] == 0).all()
    torch.testing.assert_close(values[0], values[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_same_seed_same_samples_and_global_rng_untouched():
    model = tiny("llama")
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = sampling.generate(model, PROMPTS, 12, top_p=0.9, seed=7, pad_id=PAD)
    b = sampling.generate(model, PROMPTS, 12, top_p=0.9, seed=7, pad_id=PAD)
    c = sampling.generate(model, PROMPTS, 12, top_p=0.9, seed=8, pad_id=PAD)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logprobs, b.logprobs)
    assert not torch.equal(a.tokens, c.tokens)
    assert torch.equal(torch.get_rng_state(), state)


def test_a_batch_split_into_slices_samples_what_the_whole_batch_would():
    """rows_of=(offset, total): how torchrun ranks sample their slices of one global batch."""
    model = tiny("gpt2")
    prompts = PROMPTS * 2                                              # 8 uneven prompts
    whole = sampling.generate(model, prompts, 12, top_k=20, seed=5, pad_id=PAD)
    halves = [sampling.generate(model, prompts[i:i + 4], 12, top_k=20, seed=5, pad_id=PAD, rows_of=(i, 8))
              for i in (0, 4)]
    assert torch.equal(torch.cat([h.tokens for h in halves]), whole.tokens)
    assert torch.allclose(torch.cat([h.logprobs for h in halves]), whole.logprobs, atol=1e-5)
    alone = sampling.generate(model, prompts[4:], 12, top_k=20, seed=5, pad_id=PAD)  # without rows_of: other draws
    assert not torch.equal(alone.tokens, whole.tokens[4:])


def test_compiled_decode_step_gives_the_same_samples():
    model = tiny("gpt2")
    compiled = sampling.generate(model, PROMPTS, 8, top_p=0.9, seed=1, pad_id=PAD, compile=True)
    eager = sampling.generate(model, PROMPTS, 8, top_p=0.9, seed=1, pad_id=PAD)
    assert torch.equal(compiled.tokens, eager.tokens)
    # inductor's fused kernels against eager: |log p| <= log(1000) ~ 7 and |logits| ~ 1, so 8 eps (1 + 7) ~ 7.6e-6
    torch.testing.assert_close(compiled.model_logprobs, eager.model_logprobs, atol=1e-5, rtol=0)


def test_compiled_calls_reuse_one_static_cache_per_shape():
    model = tiny("gpt2")
    first = sampling.generate(model, PROMPTS, 8, top_p=0.9, seed=1, pad_id=PAD, compile=True)
    held = model._advgen_cache[1]
    assert all(t._dynamo_static_input_type == "unguarded" for layer in held for t in layer)
    # Same shape, other prompts and padding: the cache comes back holding the first call's keys and values,
    # and the samples are still what a fresh cache gives.
    other = [[21, 22, 23, 24, 25, 26, 27], [28], [29, 30], [31, 32, 33]]
    second = sampling.generate(model, other, 8, top_p=0.9, seed=2, pad_id=PAD, compile=True)
    assert model._advgen_cache[1] is held and bool(held[0][0].abs().sum() > 0)
    eager = sampling.generate(model, other, 8, top_p=0.9, seed=2, pad_id=PAD)
    assert torch.equal(second.tokens, eager.tokens) and not torch.equal(second.tokens, first.tokens)
    torch.testing.assert_close(second.model_logprobs, eager.model_logprobs, atol=1e-5, rtol=0)
    sampling.generate(model, PROMPTS, 9, seed=1, pad_id=PAD, compile=True)  # another length: another cache
    assert model._advgen_cache[1] is not held


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_compiled_step_writes_the_cache_in_place(kind):
    # A compiled write into a view of one big cache tensor becomes a copy of the whole cache at every step.
    # With a tensor per layer for keys and one for values, no generated kernel runs over a whole cache
    # tensor; the integer constants in the generated code show the extents its loops and offsets span.
    from torch._inductor.utils import run_and_get_code

    model = tiny(kind)
    torch._dynamo.reset()
    with torch.no_grad():
        _, cache, key_valid, position = sampling.prefill(model, PROMPTS, 993, PAD)  # 1,000 slots
        P = key_valid.shape[1] - 993
        _, code = run_and_get_code(torch.compile(sampling.forward_last), model, cache,
                                   torch.zeros(len(PROMPTS), 1, dtype=torch.long), position, torch.tensor([P]),
                                   key_valid)
    constants = {int(n) for n in re.findall(r"\b(\d+)L?\b", "\n".join(code))}
    assert cache[0][0].numel() == len(PROMPTS) * cache[0][0].shape[1] * 1000 * 16
    assert max(c for c in constants if c < 10**12) < cache[0][0].numel()


def test_lora_model_samples_like_its_merged_weights():
    from peft import LoraConfig, get_peft_model

    model = tiny("gpt2")
    lora = get_peft_model(model, LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True, init_lora_weights=False))
    ours = sampling.generate(lora, PROMPTS, 10, temperature=0, pad_id=PAD)
    merged = sampling.generate(lora.merge_and_unload(), PROMPTS, 10, temperature=0, pad_id=PAD)
    assert torch.equal(ours.tokens, merged.tokens)


def test_sampler_refuses_unsupported_models_and_settings():
    from transformers import BertConfig, BertLMHeadModel

    bert = BertLMHeadModel(BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2,
                                      intermediate_size=32, is_decoder=True))
    with pytest.raises(AdvgenError, match="supports gpt2"):
        sampling.generate(bert, PROMPTS, 2)
    with pytest.raises(AdvgenError, match="top-p"):
        sampling.generate(tiny("gpt2"), PROMPTS, 2, top_p=[0.9, 0.0, 1.0, 1.0])


# ----------------------------------------------------------------------------------------------
# advgen sample


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "cond"
    result = CliRunner().invoke(main, [
        "pretrain", "--generator", "scratch:gpt2-tiny", "--batch-size", "8", "--eval-batches", "1",
        "--num-samples", "1", "--max-target-tokens", "12", "--max-steps", "2", "--eval-every", "2", "--test-batches", "1",
        "--condition", "department,rating", "--out", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


def test_sample_command_writes_conditioned_samples(run, tmp_path):
    def sample(out, *extra):
        return CliRunner().invoke(main, ["sample", str(run), "--n", "10", "--batch-size", "4", "--condition",
                                         "department=Dresses", "--temperature", "0.8", "--top-p", "0.9", *extra,
                                         "--out", str(out)])

    out = tmp_path / "s.jsonl"
    result = sample(out)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 10 and all(r["condition"]["department"] == "Dresses" for r in rows)
    assert len({r["condition"]["rating"] for r in rows}) > 1  # unset fields come from the test split
    assert all(1 <= r["tokens"] <= 12 and r["logprob"] >= r["model_logprob"] - 1e-3 for r in rows)
    again = tmp_path / "again.jsonl"
    sample(again)
    assert again.read_text() == out.read_text()
    compiled = tmp_path / "compiled.jsonl"  # batches of other shapes: recompiled steps, one static cache each
    result = sample(compiled, "--compile")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["text"] for line in compiled.read_text().splitlines()] == [r["text"] for r in rows]


@pytest.mark.parametrize("args,message", [
    (["--condition", "color=red"], "not trained on 'color'"),
    (["--condition", "department"], "expected field=value"),
    (["--top-p", "1.5"], "--top-p must be"),
    (["--temperature", "-1"], "--temperature must be"),
    (["--n", "0"], "must be positive"),
])
def test_sample_command_bad_input_exits_2_and_keeps_the_old_file(run, tmp_path, args, message):
    out = tmp_path / "s.jsonl"
    out.write_text("keep me\n")
    result = CliRunner().invoke(main, ["sample", str(run), "--out", str(out), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert out.read_text() == "keep me\n" and not (tmp_path / "s.jsonl.tmp").exists()


def test_sample_command_needs_a_run_folder(tmp_path):
    result = CliRunner().invoke(main, ["sample", str(tmp_path / "missing"), "--out", str(tmp_path / "s.jsonl")])
    assert result.exit_code == 2 and "not a run folder" in result.output


ITEMS = [{"sku": "A1", "department": "Dresses", "rating": 5}, {"sku": "B2", "department": "Tops", "rating": "2"},
         {"sku": "C3", "department": "Jackets", "rating": 4}]  # not rows of the corpus: written by hand


def test_sample_command_generates_for_each_row_of_a_file_of_new_items(run, tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(r) + "\n" for r in ITEMS))
    out = tmp_path / "s.jsonl"
    result = CliRunner().invoke(main, ["sample", str(run), "--inputs", str(items), "--num-samples", "2",
                                       "--batch-size", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["row"] for r in rows] == [1, 1, 2, 2, 3, 3]  # k per row, in the file's order
    assert [r["input"] for r in rows] == [item for item in ITEMS for _ in range(2)]  # the columns carried over
    assert [r["condition"] for r in rows] == [{"department": i["department"], "rating": i["rating"]}
                                              for i in ITEMS for _ in range(2)]
    # The prompt is the item's: the same items as CSV, one sample each, at temperature 0, give one text per item,
    # and that text is the greedy continuation of the item's own prompt.
    csv_items = tmp_path / "items.csv"
    csv_items.write_text("sku,department,rating\n" + "".join(f"{r['sku']},{r['department']},{r['rating']}\n" for r in ITEMS))
    greedy = tmp_path / "g.jsonl"
    result = CliRunner().invoke(main, ["sample", str(run), "--inputs", str(csv_items), "--temperature", "0",
                                       "--out", str(greedy)])
    assert result.exit_code == 0, result.output
    texts = [json.loads(line)["text"] for line in greedy.read_text().splitlines()]
    from advgen import runs
    _, cfg, _, model, tokenizer = runs.load(run)
    for item, text in zip(ITEMS, texts):
        prompt = runs.prompt(tokenizer, cfg, {k: str(v) for k, v in item.items()})
        s = sampling.generate(model, [prompt], cfg.max_target_tokens, eos_id=tokenizer.eos_token_id,
                              pad_id=tokenizer.pad_token_id, temperature=0)
        assert sampling.decode(tokenizer, s) == [text]
    assert len(texts) == 3


@pytest.mark.parametrize("content,args,message", [
    ('{"department": "Dresses", "rating": 5}\n{"department": "Tops"}\n', [], "row 2 has no 'rating'"),
    ('{"department": "", "rating": 5}\n', [], "row 1 has no 'department'"),
    ('{"department": "Dresses", "rating": 5}\nnot json\n', [], "line 2 is not JSON"),
    ('{"department": "Dresses", "rating": 5}\n', ["--n", "3"], "--n and --inputs exclude each other"),
    ('{"department": "Dresses", "rating": 5}\n', ["--num-samples", "0"], "must be positive"),
    (None, [], "--inputs: corpus not found"),
])
def test_sample_command_bad_inputs_file_exits_2_and_writes_nothing(run, tmp_path, content, args, message):
    items = tmp_path / "items.jsonl"
    if content is not None:
        items.write_text(content)
    out = tmp_path / "s.jsonl"
    out.write_text("keep me\n")
    result = CliRunner().invoke(main, ["sample", str(run), "--inputs", str(items), *args, "--out", str(out)])
    assert result.exit_code == 2 and message in result.output, result.output
    assert result.output.strip().count("\n") == 0, result.output  # one line
    assert out.read_text() == "keep me\n" and not (tmp_path / "s.jsonl.tmp").exists()
