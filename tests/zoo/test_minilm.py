"""lowbit.zoo.minilm: all-MiniLM-L6-v2 loaded offline, and sentence embeddings (marked ``model``).

Known answer: the cosine 0.7553 that sentence-transformers publishes for its example pair."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from lowbit import zoo  # noqa: E402
from lowbit.errors import InputTypeError, OptionError  # noqa: E402


@pytest.fixture(scope="module")
def minilm():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        return zoo.load_minilm()


@pytest.fixture(scope="module")
def corpus_embeddings(minilm):
    return zoo.embed(*minilm, zoo.sentences())


@pytest.mark.model
def test_minilm_loaded_offline_in_eval_mode(minilm):
    model, tokenizer = minilm
    assert not model.training
    assert model.config.hidden_size == zoo.MINILM_DIM and model.config.num_hidden_layers == 6
    assert tokenizer("hello world")["input_ids"][0] == tokenizer.cls_token_id


@pytest.mark.model
def test_embeddings_have_unit_norm(corpus_embeddings):
    assert corpus_embeddings.shape == (96, 384) and corpus_embeddings.dtype == torch.float32
    torch.testing.assert_close(corpus_embeddings.norm(dim=1), torch.ones(96), atol=1e-5, rtol=0)


@pytest.mark.model
def test_embedding_does_not_depend_on_batching(minilm, corpus_embeddings):
    """Mask-aware pooling: a short sentence padded in a batch equals it embedded alone."""
    texts = zoo.sentences()[:6]
    alone = zoo.embed(*minilm, texts, batch_size=1)
    torch.testing.assert_close(alone, corpus_embeddings[:6], atol=1e-5, rtol=0)


@pytest.mark.model
def test_cosine_identical_related_unrelated(minilm):
    texts = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "A man is eating food.",
        "The committee will vote on the new budget next Tuesday.",
        "A monkey is playing drums.",
    ]
    e = zoo.embed(*minilm, texts, batch_size=2)
    cos = e @ e.T
    assert float(cos[0, 2]) == pytest.approx(1.0, abs=1e-5)
    assert float(cos[0, 1]) == pytest.approx(0.7553, abs=2e-3)  # sentence-transformers' published score
    assert float(cos[0, 1]) > max(float(cos[0, 3]), float(cos[0, 4]), float(cos[1, 3]), float(cos[1, 4])) + 0.4


@pytest.mark.model
def test_embed_edge_cases(minilm):
    assert zoo.embed(*minilm, []).shape == (0, 384)
    with pytest.raises(InputTypeError, match="wrap it in a list"):
        zoo.embed(*minilm, "A man is eating food.")
    with pytest.raises(InputTypeError, match=r"\(1, 'int'\)"):
        zoo.embed(*minilm, ["fine", 3])
    with pytest.raises(OptionError, match="batch_size"):
        zoo.embed(*minilm, ["fine"], batch_size=0)
