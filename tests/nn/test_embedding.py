"""lowbit.nn.embedding: WeightOnlyEmbedding against torch's F.embedding of the dequantized table.

The reference table is ``lowbit.fake_quantize`` of the float weight (one fused
quantize+dequantize pass over the whole table), so the rows the layer dequantizes
on their own must be bit for bit the rows of that table.
"""

from __future__ import annotations

import pytest

from lowbit import PerChannel, PerGroup, PerTensor
from lowbit.errors import InputTypeError, OptionError

torch = pytest.importorskip("torch")
F = torch.nn.functional
lnn = pytest.importorskip("lowbit.nn")

pytestmark = pytest.mark.torch


EMBEDDINGS = [
    ("int4", None),  # per row, gathered
    ("int8", PerGroup(4)),  # groups along the row, gathered
    ("uint2", PerChannel(1)),  # per column, gathered
    ("int3", None),  # 10 * 3 bits is not whole bytes per row: whole-table path
    ("int4", PerGroup(2, axis=0)),  # groups across rows: whole-table path
]


@pytest.mark.parametrize(("qtype", "gran"), EMBEDDINGS, ids=[f"{q}-{g}" for q, g in EMBEDDINGS])
def test_embedding_equals_fake_quantized_table(qtype, gran, fq_weight):
    dim = 10 if qtype == "int3" else 8
    emb = torch.nn.Embedding(12, dim)
    q = lnn.WeightOnlyEmbedding.from_float(emb, qtype, gran)
    idx = torch.tensor([[3, 0, 11], [3, 7, 7]])
    assert torch.equal(q(idx), F.embedding(idx, fq_weight(emb, qtype, gran, None)))
    assert q(torch.zeros(0, dtype=torch.long)).shape == (0, dim)


def test_embedding_padding_idx_and_max_norm(fq_weight):
    emb = torch.nn.Embedding(10, 8, padding_idx=-1, max_norm=1.0)
    q = lnn.WeightOnlyEmbedding.from_float(emb, "int8")
    assert q.padding_idx == 9
    idx = torch.tensor([9, 2, 2, 5])
    with torch.no_grad():
        want = F.embedding(idx, fq_weight(emb, "int8", None, None), max_norm=1.0)
    out = q(idx)
    assert torch.equal(out, want)
    assert bool((out[0] == 0).all()) and float(out[1].norm()) <= 1.0 + 1e-6


def test_bad_inputs_raise_typed_errors():
    emb = lnn.WeightOnlyEmbedding(5, 4)
    with pytest.raises(InputTypeError, match="integer index"):
        emb(torch.ones(3))
    with pytest.raises(IndexError, match="out of range"):
        emb(torch.tensor([5]))


# --------------------------------------------------------------------------- every granularity, both paths

# (granularity, rows dequantized on their own): per tensor, per row, per column and groups along the
# embedding dimension keep rows independent; groups across rows need the whole table
GRANULARITIES = [
    (PerTensor(), True),
    (PerChannel(0), True),
    (PerChannel(-2), True),
    (PerChannel(1), True),
    (PerChannel(-1), True),
    (PerGroup(4), True),
    (PerGroup(2, axis=1), True),
    (PerGroup(2, axis=0), False),
    (PerGroup(3, axis=-2), False),
    (PerGroup(3), True),  # ragged: groups of 3, 3, 2 along each row
    (PerGroup(5, axis=0), False),  # ragged across rows: 5, 5, 2
]
QTYPES = ["int8", "int4", "uint4", "int3", "uint12", "nf4", "fp8_e4m3"]


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize(("gran", "row_wise"), GRANULARITIES, ids=[str(g) for g, _ in GRANULARITIES])
def test_looked_up_rows_are_the_rows_of_the_dequantized_table(gran, row_wise, qtype, fq_weight):
    emb = torch.nn.Embedding(12, 8)
    q = lnn.WeightOnlyEmbedding.from_float(emb, qtype, gran)
    assert q._row_wise() is row_wise  # which path this case takes (8 * bits is whole bytes for every qtype here)
    table = fq_weight(emb, qtype, gran, None)
    for idx in (torch.tensor([[3, 0, 11], [3, 7, 7], [11, 11, 0]]), torch.tensor([5], dtype=torch.int32),
                torch.tensor(4), torch.arange(12).flip(0)):
        out = q(idx)
        assert out.dtype == torch.float32 and out.shape == (*idx.shape, 8)
        assert torch.equal(out, F.embedding(idx.long(), table)), idx
    assert torch.equal(q.dequantized_weight(), table)


@pytest.mark.parametrize("dim", [10, 6])
def test_rows_that_do_not_start_on_a_byte_take_the_whole_table(dim, fq_weight):
    emb = torch.nn.Embedding(7, dim)
    q = lnn.WeightOnlyEmbedding.from_float(emb, "int3", PerChannel(0))  # 10 * 3 and 6 * 3 bits: not whole bytes
    assert not q._row_wise()
    idx = torch.tensor([6, 0, 6, 2])
    assert torch.equal(q(idx), F.embedding(idx, fq_weight(emb, "int3", None, None)))


# --------------------------------------------------------------------------- padding_idx and max_norm


@pytest.mark.parametrize("gran", [PerChannel(0), PerTensor(), PerGroup(2, axis=0)], ids=str)
@pytest.mark.parametrize("qtype", ["int4", "uint4"])
def test_padding_row_is_zero_and_negative_padding_idx_counts_from_the_end(gran, qtype):
    emb = torch.nn.Embedding(10, 8, padding_idx=-3)  # torch zeroes that row of the float table
    q = lnn.WeightOnlyEmbedding.from_float(emb, qtype, gran)
    assert q.padding_idx == emb.padding_idx == 7
    out = q(torch.tensor([7, 1, 7]))
    assert torch.equal(out[0], torch.zeros(8)) and torch.equal(out[2], torch.zeros(8))
    assert bool(out[1].abs().sum() > 0)
    assert "padding_idx=7" in repr(q)


@pytest.mark.parametrize("padding_idx", [10, -11, 100])
def test_padding_idx_outside_the_table_is_an_option_error(padding_idx):
    with pytest.raises(OptionError, match=f"padding_idx={padding_idx} is outside the table of 10 rows"):
        lnn.WeightOnlyEmbedding(10, 8, padding_idx=padding_idx)


@pytest.mark.parametrize("norm_type", [2.0, 1.0])
@pytest.mark.parametrize("gran", [PerChannel(0), PerGroup(2, axis=0)], ids=["row-wise", "whole-table"])
def test_max_norm_renormalises_the_output_rows_only(gran, norm_type, fq_weight):
    emb = torch.nn.Embedding(6, 8, max_norm=1.5, norm_type=norm_type)
    with torch.no_grad():
        emb.weight.mul_(torch.tensor([0.1, 1.0, 3.0, 0.2, 5.0, 1.0]).reshape(6, 1))
    q = lnn.WeightOnlyEmbedding.from_float(emb, "int8", gran)
    table = fq_weight(emb, "int8", gran, None)
    idx = torch.tensor([[0, 2, 4], [4, 1, 5]])
    want = F.embedding(idx, table.clone(), max_norm=1.5, norm_type=norm_type)  # torch renormalises its copy
    out = q(idx)
    assert torch.equal(out, want)
    assert bool((torch.linalg.vector_norm(out, ord=norm_type, dim=-1) <= 1.5 * (1 + 1e-6)).all())
    assert torch.equal(q.dequantized_weight(), table)  # the stored table is left as it was
    assert torch.equal(q(idx), out)


# --------------------------------------------------------------------------- bad and empty indices


@pytest.mark.parametrize("gran", [PerChannel(0), PerGroup(2, axis=0)], ids=["row-wise", "whole-table"])
@pytest.mark.parametrize("bad", [6, 7, 1000, -1, -6])
def test_index_out_of_range_is_an_index_error(gran, bad):
    q = lnn.WeightOnlyEmbedding.from_float(torch.nn.Embedding(6, 4), "int8", gran)
    with pytest.raises(IndexError):
        q(torch.tensor([[0, 1], [bad, 2]]))
    with pytest.raises(IndexError):
        torch.nn.functional.embedding(torch.tensor([bad]), torch.zeros(6, 4))  # as torch itself does


@pytest.mark.parametrize("indices", [torch.tensor([1.0, 2.0]), torch.tensor([1, 2], dtype=torch.float64),
                                     torch.tensor([True, False]), torch.tensor([1 + 0j]), [1, 2], 3],
                         ids=["float32", "float64", "bool", "complex", "list", "int"])
def test_indices_that_are_not_an_integer_tensor_are_an_input_type_error(indices):
    for gran in (PerChannel(0), PerGroup(2, axis=0)):
        q = lnn.WeightOnlyEmbedding(6, 4, granularity=gran)
        with pytest.raises(InputTypeError, match="integer index tensor"):
            q(indices)


@pytest.mark.parametrize("shape", [(0,), (2, 0), (0, 3)])
@pytest.mark.parametrize("gran", [PerChannel(0), PerGroup(2, axis=0)], ids=["row-wise", "whole-table"])
def test_empty_index_tensor_gives_an_empty_float32_result(gran, shape):
    q = lnn.WeightOnlyEmbedding.from_float(torch.nn.Embedding(6, 4), "int4", gran)
    out = q(torch.zeros(shape, dtype=torch.long))
    assert out.shape == (*shape, 4) and out.dtype == torch.float32
    assert out.shape == F.embedding(torch.zeros(shape, dtype=torch.long), torch.zeros(6, 4)).shape


def test_bad_table_sizes_are_refused():
    with pytest.raises(OptionError, match=r"WeightOnlyEmbedding sizes must be positive ints, got num_embeddings=0, "
                                          r"embedding_dim=-3"):
        lnn.WeightOnlyEmbedding(0, -3)


def test_mx_table_rows_are_looked_up_from_the_whole_table():
    torch.manual_seed(0)
    emb = lnn.WeightOnlyEmbedding.from_float(torch.nn.Embedding(10, 64), "mxfp4")
    idx = torch.tensor([[3, 0], [9, 3]])
    assert torch.equal(emb(idx), emb.dequantized_weight()[idx])
