"""Decoders through the scripts: a byte-level BPE tokenizer trained here on the real CoLA sentences (read by ours and
by transformers' PreTrainedTokenizerFast into the same ids), a tiny random Llama and GPT-2 fine-tuned by train.py on
real CoLA with ce, min and max, predict.py on their best/, and the options a decoder cannot take refused. No real
decoder weights reach these machines: the weights are random, the configs' shapes small."""
import json

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

import predict
from conftest import GLUE, args_for, cola_rows, run_cli
from data.loading import load_split
from data.tasks import get_task
from data.tokenization import encode, load_tokenizer
from harness.classifiers import load_classifier

transformers = pytest.importorskip("transformers")

SPECIALS = ["<s>", "</s>", "<pad>"]


def bpe_tokenizer(pad: bool = True) -> Tokenizer:
    """Byte-level BPE trained on 2,000 real CoLA training sentences; BOS and EOS added by its post-processor."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    specials = SPECIALS if pad else SPECIALS[:2]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([sentence for sentence, _ in cola_rows(2000)], trainer)
    bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1",
                                                             special_tokens=[("<s>", bos), ("</s>", eos)])
    return tokenizer


def decoder_checkpoint(folder, kind: str, tokenizer: Tokenizer):
    """A tiny random transformers classifier of `kind` (llama, gpt2) saved with the tokenizer: what a user's folder
    holds, with random weights."""
    torch.manual_seed(0)
    vocab = tokenizer.get_vocab_size()
    if kind == "llama":
        config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                          pad_token_id=tokenizer.token_to_id("<pad>"), eos_token_id=1, bos_token_id=0)
        model = transformers.LlamaForSequenceClassification(config)
    else:
        config = transformers.GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                         eos_token_id=1, bos_token_id=0)
        model = transformers.GPT2ForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer.model.save(str(folder))  # vocab.json and merges.txt, which hub folders carry beside tokenizer.json
    (folder / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    return folder


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return decoder_checkpoint(tmp_path_factory.mktemp("llama"), "llama", bpe_tokenizer())


def test_our_tokenisation_of_a_byte_level_bpe_tokenizer_is_transformers(llama):
    ours = load_tokenizer(llama)
    theirs = transformers.PreTrainedTokenizerFast(tokenizer_file=str(llama / "tokenizer.json"))
    for task in ("cola", "mrpc"):
        examples = load_split(get_task(task), "validation", str(GLUE), 200)
        encoded = encode(ours, examples, 64)
        texts = examples.texts if len(examples.texts) == 2 else (examples.texts[0], None)
        expected = theirs(*texts, truncation=True, max_length=64)["input_ids"]
        assert [list(ids) for ids in encoded.input_ids] == expected
        assert all(ids[0] == 0 and ids[-1] == 1 for ids in encoded.input_ids)  # BOS ... EOS, its post-processor's
    assert encoded.pad_id == ours.token_to_id("<pad>") == 2


def test_a_tokenizer_without_a_pad_token_pads_with_eos_and_says_so(tmp_path, capsys):
    bpe_tokenizer(pad=False).save(str(tmp_path / "tokenizer.json"))
    tokenizer = load_tokenizer(tmp_path)
    assert encode(tokenizer, load_split(get_task("cola"), "validation", str(GLUE), 4), 32).pad_id == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"warning: {tmp_path}: padding with the end-of-sequence token '</s>'")


def test_a_damaged_tokenizer_config_is_one_line(tmp_path):
    from data.tasks import DataError
    bpe_tokenizer().save(str(tmp_path / "tokenizer.json"))
    for text, reason in (('{"pad_token": ', "cannot read it"), ("[1, 2]", "expected a JSON object, got list")):
        (tmp_path / "tokenizer_config.json").write_text(text)
        with pytest.raises(DataError, match=f"tokenizer_config.json: {reason}"):
            load_tokenizer(tmp_path)


def train_cmi(out) -> float:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]["train_cmi"]


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_train_py_fine_tunes_a_decoder_min_lowers_and_max_raises_the_train_cmi(kind, tmp_path):
    model = decoder_checkpoint(tmp_path / kind, kind, bpe_tokenizer())
    cmi = {}
    for mode in ("ce", "min", "max"):
        out = tmp_path / mode
        result = run_cli(args_for(model, out, "--mode", mode, "--lam", "10", "--epochs", "2"))
        assert result.returncode == 0, result.stderr
        cmi[mode] = train_cmi(out)
    print(f"{kind}: train CMI ce {cmi['ce']:.3g}, min {cmi['min']:.3g}, max {cmi['max']:.3g}")
    assert cmi["min"] < cmi["ce"] < cmi["max"]
    best = tmp_path / "ce" / "best"
    config = json.loads((best / "config.json").read_text())
    assert config["model_type"] == kind and config["pad_token_id"] == 2
    for name in ("tokenizer.json", "vocab.json", "merges.txt", "chat_template.jinja"):  # the whole tokenizer kept
        assert (best / name).read_bytes() == (model / name).read_bytes(), name

    # predict.py reads best/: the dev metrics it writes are those of the run's best epoch
    predict.main(["--model", str(best), "--task", "cola", "--data-dir", str(GLUE), "--out", str(tmp_path / "p"),
                  "--max-len", "128"])
    metrics = json.loads((tmp_path / "p" / "metrics.json").read_text())
    assert -1 <= metrics["mcc"] <= 1 and metrics["eval_cmi"] > 0
    assert len((tmp_path / "p" / "predictions-validation.tsv").read_text().splitlines()) == 1 + 1043

    # and transformers reads our saved folder into the same logits
    ours = load_classifier(str(best), None)[0].eval()
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(best).eval()
    ids = torch.tensor([[0, 40, 41, 42, 1], [0, 50, 1, 2, 2]])
    mask = (torch.arange(5) < torch.tensor([[5], [3]])).long()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, mask).logits, theirs(input_ids=ids, attention_mask=mask).logits,
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("flags, message, advised", [
    (["--cmi-feature", "cls"], "--cmi-feature cls: a llama decoder's first token sees only itself",
     ["--cmi-feature", "pooled"]),
    (["--gamma", "0.5"], "--gamma 0.5: the checkpoint ", ["--gamma", "0"]),  # an untied classifier: no LM head
])
def test_what_a_decoder_cannot_take_is_one_line_and_the_advice_works(llama, tmp_path, flags, message, advised):
    result = run_cli(args_for(llama, tmp_path / "run", "--mode", "min", *flags))
    assert result.returncode == 2 and result.stderr == f"error: {message}" + result.stderr.split(message)[1]
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "run").exists()
    assert f"use {' '.join(advised)}" in result.stderr
    result = run_cli(args_for(llama, tmp_path / "run", "--mode", "min", "--epochs", "1", *advised))
    assert result.returncode == 0, result.stderr


def test_a_sweep_of_a_decoder_and_its_report(llama, tmp_path):
    """sweep.py's train stage with a decoder --model (its students, DistilBERTs of BERT teachers, are the distill
    stage's), then report.py's paired comparison of its runs."""
    import report
    import sweep
    out = tmp_path / "sweep"
    assert sweep.main(["--out", str(out), "--tasks", "cola", "--modes", "ce,min", "--lams", "10", "--seeds", "0,1",
                       "--epochs", "1", "--stage", "train", "--model", str(llama), "--data-dir", str(GLUE),
                       "--max-train-samples", "96", "--max-eval-samples", "64", "--batch-size", "16",
                       "--lr", "1e-3"]) == 0
    assert all((out / "cola" / arm / "results.json").is_file()
               for arm in ("ce/seed0", "ce/seed1", "min/lam10-seed0", "min/lam10-seed1"))
    text = report.report(out)
    assert "| ce | 2 |" in text and "| min λ=10 | 2 |" in text  # both arms, two seeds each, paired


def test_gamma_on_a_decoder_adds_its_causal_lm_loss(tmp_path):
    """--gamma on GPT-2 (its LM head the tied word embeddings): the steps log the causal-LM loss L1, the loss is
    CE + gamma * L1 at each logged step, and best/ holds no LM head of its own (transformers reloads it)."""
    model = decoder_checkpoint(tmp_path / "gpt2", "gpt2", bpe_tokenizer())
    result = run_cli(args_for(model, tmp_path / "run", "--mode", "ce", "--gamma", "0.5", "--epochs", "1",
                              "--log-every", "1"))
    assert result.returncode == 0, result.stderr
    steps = [json.loads(line) for line in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()]
    assert steps and all(s["lm"] > 0 for s in steps)
    for s in steps:
        assert s["loss"] == pytest.approx(s["ce"] + 0.5 * s["lm"], rel=1e-5)
    assert "lm_head.weight" not in load_file(tmp_path / "run" / "best" / "model.safetensors")


def test_distill_py_distils_a_decoder_teacher_into_every_other_layer_of_it(llama, tmp_path):
    """distill.py with a decoder teacher (a train.py run's best/): the student is the teacher's architecture with
    every other layer by default (here layer 0 of 2), its best/ loads in transformers with the same logits."""
    import distill
    assert run_cli(args_for(llama, tmp_path / "teacher", "--mode", "max", "--epochs", "1")).returncode == 0
    out = tmp_path / "student"
    distill.main(["--task", "cola", "--data-dir", str(GLUE), "--teacher", str(tmp_path / "teacher" / "best"),
                  "--out", str(out), "--epochs", "1", "--max-train-samples", "96", "--max-eval-samples", "64",
                  "--batch-size", "16", "--lr", "1e-3"])
    results = json.loads((out / "results.json").read_text())
    assert results["args"]["student_layers"] == [0]
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 1 and config["pad_token_id"] == 2
    ours = load_classifier(str(out / "best"), None)[0].eval()
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(out / "best").eval()
    ids = torch.tensor([[0, 40, 41, 42, 1], [0, 50, 1, 2, 2]])
    mask = (torch.arange(5) < torch.tensor([[5], [3]])).long()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, mask).logits, theirs(input_ids=ids, attention_mask=mask).logits,
                                   atol=1e-5, rtol=1e-5)
