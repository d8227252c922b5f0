import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from advgen import data, models
from advgen.errors import AdvgenError


def test_scratch_gpt2_uses_the_real_gpt2_tokenizer():
    model, tok = models.load_generator("scratch:gpt2-tiny")
    assert len(tok) == 50257 and model.config.vocab_size == 50257
    assert tok.encode("Hello world") == [15496, 995]  # GPT-2's own ids
    assert tok.pad_token_id == tok.eos_token_id == 50256
    assert model.config.n_layer == 2


def test_scratch_init_is_seeded():
    a, _ = models.load_generator("scratch:gpt2-tiny", seed=1)
    b, _ = models.load_generator("scratch:gpt2-tiny", seed=1)
    c, _ = models.load_generator("scratch:gpt2-tiny", seed=2)
    assert torch.equal(a.lm_head.weight, b.lm_head.weight)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)


def test_dropout_is_set_in_the_config():
    model, _ = models.load_generator("scratch:gpt2-tiny", dropout=0.25)
    assert model.config.resid_pdrop == model.config.attn_pdrop == 0.25


def test_target_nll_equals_hf_loss():
    model, tok = models.load_generator("scratch:gpt2-tiny", dropout=0.0)
    model.eval()
    batch = data.collate([([50256, 7, 8], [9, 10, 50256]), ([50256, 11], [12, 50256])], tok.pad_token_id)
    nll, n = models.target_nll(model, batch)
    assert n == 5
    with torch.no_grad():
        reference = model(**batch).loss  # HF's mean over labelled shifted positions
    assert torch.allclose(nll / n, reference, atol=1e-5)


def test_saved_generator_loads_with_auto_classes_and_generates(tmp_path):
    model, tok = models.load_generator("scratch:gpt2-tiny")
    models.save(model, tok, tmp_path / "generator")
    models.save(model, tok, tmp_path / "generator")  # replacing an existing folder is atomic too
    assert (tmp_path / "generator" / "model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "generator")
    loaded_tok = AutoTokenizer.from_pretrained(tmp_path / "generator")
    prompt = loaded_tok("Lovely", return_tensors="pt")
    out = loaded.generate(**prompt, max_new_tokens=3, min_new_tokens=3, do_sample=False,
                          pad_token_id=loaded_tok.eos_token_id)
    assert out.shape == (1, prompt["input_ids"].shape[1] + 3)
    assert [p.name for p in tmp_path.iterdir()] == ["generator"]


def test_packaged_minilm_discriminator(tmp_path):
    model, tok = models.load_discriminator("minilm-l6", num_labels=2)
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert sum(p.numel() for p in model.bert.parameters()) == pytest.approx(22.7e6, rel=0.01)
    logits = model(**tok(["a red dress", "bad fit"], return_tensors="pt", padding=True)).logits
    assert logits.shape == (2, 2)
    models.save(model, tok, tmp_path / "d")
    assert AutoModelForSequenceClassification.from_pretrained(tmp_path / "d").config.num_labels == 2


def test_scratch_bert_discriminator():
    model, tok = models.load_discriminator("scratch:bert-tiny", num_labels=3)
    assert model.config.num_hidden_layers == 2 and model.config.num_labels == 3
    assert tok.tokenize("Dress") == ["dress"]  # uncased WordPiece


@pytest.mark.parametrize("spec, message", [
    ("scratch:gpt2-huge", "unknown generator spec"),
    ("scratch:llama-tiny", "unknown generator spec"),
    ("not a model!", "unknown generator spec"),
    ("./no/such/folder", "unknown generator spec"),
    ("gpt2", "hub is offline"),
])
def test_bad_generator_specs_name_the_offline_choices(spec, message):
    with pytest.raises(AdvgenError, match=message) as e:
        models.load_generator(spec)
    assert "smollm2-135m" in str(e.value) and "scratch:gpt2-mini" in str(e.value)


def test_folder_without_config(tmp_path):
    with pytest.raises(AdvgenError, match="no config.json"):
        models.load_generator(str(tmp_path))


def test_corpus_tokenizer_is_deterministic_and_byte_level():
    texts = [f"{colour} {item} number {i}" for i, (colour, item) in
             enumerate([("red", "dress"), ("blue", "top"), ("green", "skirt")] * 40)]
    a, b = models.corpus_tokenizer(texts, 300), models.corpus_tokenizer(texts, 300)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    assert len(a) <= 300 and a.eos_token == a.pad_token == a.bos_token == models.END_OF_TEXT
    unseen = " Ünïcode 😀 never seen"
    assert a.decode(a(unseen, add_special_tokens=False)["input_ids"]) == unseen
    assert len(a(" red dress", add_special_tokens=False)["input_ids"]) < len(" red dress".encode())  # merges learned
