"""``lowbit plan`` on a tiny Llama folder (random weights, a word-level tokenizer): file, budget, errors."""

from __future__ import annotations

import argparse
import collections
import json
import re

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lowbit.errors import FileFormatError, OptionError  # noqa: E402
from lowbit.plan import cli, load_plan  # noqa: E402


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A 2-layer Llama (tied lm_head) whose tokenizer knows Macbeth's 300 commonest words."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from lowbit.zoo.corpus import play_text

    words = collections.Counter(re.findall(r"\w+", play_text("macbeth").lower()))
    vocab = {"[UNK]": 0, **{w: i + 1 for i, (w, _) in enumerate(words.most_common(300))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=64, tie_word_embeddings=True)
    folder = tmp_path_factory.mktemp("tiny-llama")
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def run(*argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args([str(a) for a in argv]))


def test_plans_a_folder_under_the_budget(llama_dir, tmp_path):
    out = tmp_path / "plan.json"
    text = run(llama_dir, "--budget", "5.5", "--candidates", "int8,int4:g32,int3:g32", "--seq-len", "32",
               "-o", out, "--quiet")
    plan = load_plan(out)
    assert f"wrote {out}" in text and "bits/weight" in text
    assert len(plan.layers) == 14  # 7 Linear layers per block; the tied lm_head is not planned
    assert plan.bits_per_weight <= 5.5 and plan.budget_bits == 5.5 and plan.metric == "kl"
    assert {c.candidate for c in plan.layers.values()} <= {"int8", "int4:g32", "int3:g32"}
    doc = json.loads(out.read_text())
    for layer in doc["sensitivity"].values():  # anchored: one candidate measured per layer, the others predicted
        assert sum(v["measured"] for v in layer.values()) == 1


def test_quantize_applies_the_written_plan(llama_dir, tmp_path):
    import lowbit.model as lm

    out = tmp_path / "plan.json"
    run(llama_dir, "--budget-bytes", "60000", "--candidates", "int8,int4:g32", "--seq-len", "32", "-o", out,
        "--quiet", "--sensitivity", "measured")
    model = transformers.LlamaForCausalLM.from_pretrained(llama_dir).eval()
    summary = lm.quantize_(model, out)
    plan = load_plan(out)
    assert plan.total_bytes <= 60000
    assert {r.name: r.scheme for r in summary.rows} == {n: plan.config_for(n).scheme for n in plan.layers}


def test_errors(llama_dir, tmp_path):
    out = tmp_path / "plan.json"
    with pytest.raises(OptionError, match="below the cheapest plan"):
        run(llama_dir, "--budget", "2", "--candidates", "int8,int4:g32", "--seq-len", "32", "-o", out, "--quiet")
    assert not out.exists()
    with pytest.raises(OptionError, match="unknown candidate option"):
        run(llama_dir, "--budget", "4", "--candidates", "int4:q32", "-o", out)
    with pytest.raises(FileFormatError, match="unknown model"):
        run(tmp_path / "nothing", "--budget", "4", "-o", out)
    out.write_text("{}")
    with pytest.raises(FileFormatError, match="--overwrite"):
        run(llama_dir, "--budget", "4", "-o", out)


def test_budget_is_required():
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["smollm2", "-o", "p.json"])
