"""farm.model: the PyTorch network against published counts, the SPEC's structure, BN and init."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from farm import cost
from farm.config import NB101, SMOKE
from farm.model import (
    TRUNCATED_NORMAL_STD_CORRECTION,
    Network,
    ShardedBatchNorm2d,
    build_network,
    count_parameters,
)
from farm.spec import Cell, cell_from_labels
from nasfarm.cli import main as cli_main
from tests.test_cost import (
    CONV3X3_SKIP,
    INCEPTION_README,
    INPUT_OUTPUT_ONLY,
    PUBLISHED,
    SPACE_MAXIMUM,
    SPACE_MINIMUM,
    TRUNCATION,
    make_cell,
    random_cells,
)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- parameter counts -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_counts_from_the_module_on_meta(name):
    entry = PUBLISHED[name]
    with torch.device("meta"):
        network = build_network(make_cell(entry), NB101)
    assert sum(p.numel() for p in network.parameters()) == entry[3]


@pytest.mark.parametrize("entry", [INCEPTION_README, SPACE_MINIMUM, INPUT_OUTPUT_ONLY])
def test_published_counts_from_a_real_cpu_module(entry):
    network = build_network(make_cell(entry), NB101, generator=seeded(0))
    assert sum(p.numel() for p in network.parameters()) == entry[3]
    assert all(not p.is_meta for p in network.parameters())


def test_closed_form_equals_module_count_on_random_cells():
    cells = random_cells(300, seed=11)
    for cell in cells:
        network = Network(cell, NB101, device="meta")
        assert count_parameters(network) == cost.trainable_parameters(cell), cell.to_dict()
    for cell in cells[:40]:
        network = Network(cell, SMOKE, device="meta")
        assert count_parameters(network) == cost.trainable_parameters(cell, SMOKE), cell.to_dict()


def test_closed_form_equals_module_count_on_enumerated_sample():
    from farm import space

    for enumerated in space.sample_cells(100, seed=3):
        params, _ = cost.cost_from_labels(enumerated.matrix, enumerated.labels)
        cell = cell_from_labels(enumerated.matrix, enumerated.labels)
        assert cell.hash == enumerated.hash
        assert count_parameters(Network(cell, NB101, device="meta")) == params


# --- structure ------------------------------------------------------------------------------


def test_vertex_channels_and_truncation_in_the_built_module():
    network = Network(make_cell(TRUNCATION), NB101, device="meta")
    first = network.stack0.module0
    assert [v.op.conv.weight.shape[0] for v in first.vertices] == [43, 43, 42]
    assert tuple(first.vertices[0].projection.conv.weight.shape) == (43, 128, 1, 1)
    assert tuple(first.vertices[2].op.conv.weight.shape) == (42, 42, 3, 3)
    doubling = network.stack1.module0  # 128 in, 256 out: its projections change the width
    assert tuple(doubling.vertices[0].projection.conv.weight.shape) == (86, 128, 1, 1)
    assert [v.op.conv.weight.shape[0] for v in network.stack2.module2.vertices] == [171, 171, 170]


def test_only_the_dense_layer_has_a_bias_and_every_conv_is_followed_by_bn():
    network = Network(make_cell(INCEPTION_README), NB101, device="meta")
    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in network.modules() if isinstance(m, nn.BatchNorm2d)]
    assert convs and all(c.bias is None for c in convs)
    assert len(bns) == len(convs)
    assert all(b.momentum == pytest.approx(0.003) and b.eps == pytest.approx(1e-5) for b in bns)
    biases = [n for n, _ in network.named_parameters() if n.endswith("bias") and ".bn." not in n]
    assert biases == ["dense.bias"]
    # SPEC d.5: the Inception cell has 221 trainable tensors in TF.
    assert len(list(network.parameters())) == 221


def test_downsampling_is_a_2x2_max_pool_and_the_head_sees_512_channels():
    network = Network(make_cell(INCEPTION_README), NB101, device="meta")
    for stack in (network.stack1, network.stack2):
        pool = stack.downsample
        assert isinstance(pool, nn.MaxPool2d) and pool.kernel_size == 2 and pool.stride == 2
    assert not hasattr(network.stack0, "downsample")
    assert tuple(network.dense.weight.shape) == (10, 512)


def _eval_module(module, x):
    module.eval()
    with torch.no_grad():
        return module(x)


def test_module_forward_follows_the_spec_sum_concat_and_added_projection():
    """Hand-composed from SPEC d.4 with the module's own layers, in eval mode."""
    torch.manual_seed(0)
    # 0->1, 0->2, 1->2, 2->3, 0->3: vertex 2 sums v1 and its own projection; the output is v2
    # plus the input->output projection (added, not concatenated).
    matrix = [[0, 1, 1, 1], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    cell = Cell.from_any(matrix, ["input", "conv3x3-bn-relu", "conv1x1-bn-relu", "output"])
    config = replace(NB101, stem_channels=6)
    network = build_network(cell, config, generator=seeded(1))
    module = network.stack0.module0.eval()
    x = torch.randn(2, 6, 8, 8)
    with torch.no_grad():
        v1 = module.vertices[0].op(module.vertices[0].projection(x))
        v2 = module.vertices[1].op(v1 + module.vertices[1].projection(x))
        expected = v2 + module.projection(x)
    assert torch.allclose(_eval_module(module, x), expected, atol=1e-6)

    # Truncation: vertex 3 takes the FIRST 42 of vertex 2's 43 channels; output = concat(1, 2, 3).
    network = build_network(make_cell(TRUNCATION), NB101, generator=seeded(2))
    module = network.stack0.module0.eval()
    x = torch.randn(1, 128, 4, 4)
    with torch.no_grad():
        v1 = module.vertices[0].op(module.vertices[0].projection(x))
        v2 = module.vertices[1].op(v1)
        v3 = module.vertices[2].op(v2[:, :42])
        expected = torch.cat([v1, v2, v3], dim=1)
    assert module.projection is None
    assert torch.allclose(_eval_module(module, x), expected, atol=1e-6)


def test_two_vertex_module_is_its_projection():
    network = build_network(make_cell(INPUT_OUTPUT_ONLY), SMOKE, generator=seeded(0))
    module = network.stack1.module0
    x = torch.randn(3, 8, 16, 16)
    assert torch.equal(_eval_module(module, x), _eval_module(module.projection, x))


def test_smoke_network_trains_a_step_on_cpu():
    for entry in (INCEPTION_README, CONV3X3_SKIP, INPUT_OUTPUT_ONLY):
        network = build_network(make_cell(entry), SMOKE, generator=seeded(0))
        x = torch.randn(SMOKE.batch_size, 3, 32, 32)
        y = torch.randint(0, 10, (SMOKE.batch_size,))
        logits = network(x)
        assert logits.shape == (SMOKE.batch_size, 10)
        F.cross_entropy(logits, y).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in network.parameters())


# --- FLOPs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PUBLISHED))
@pytest.mark.parametrize("config", [NB101, SMOKE], ids=["nb101", "smoke"])
def test_forward_flops_match_torch_flop_counter(name, config):
    cell = make_cell(PUBLISHED[name])
    network = Network(cell, config, device="meta")
    batch = 3
    with FlopCounterMode(display=False) as counter:
        network(torch.empty(batch, 3, 32, 32, device="meta"))
    # FlopCounterMode counts 2 FLOPs per multiply-add, convs and the dense matmul only.
    assert counter.get_total_flops() == 2 * batch * cost.forward_flops(cell, config)


def test_inception_training_compute_matches_the_research_note():
    """training-anchors.md: the Inception-like cell is 10.4 PFLOP per 108-epoch run, counted as
    6 FLOPs (forward + backward, 2 per multiply-add) x MACs x 4.32M images."""
    pflop = 6 * cost.forward_flops(make_cell(INCEPTION_README)) * 4_320_000 / 1e15
    assert pflop == pytest.approx(10.4, abs=0.05)


# --- initialization -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inception_network():
    return build_network(make_cell(INCEPTION_README), NB101, generator=seeded(7))


def test_conv_init_is_truncated_normal_with_fan_in_variance(inception_network):
    conv = inception_network.stack2.module0.vertices[2].op.conv  # 3x3, 128 -> 128
    weight = conv.weight.detach().flatten().double()
    fan_in = 128 * 3 * 3
    target_std = math.sqrt(1.0 / fan_in)  # the corrected truncated draw has variance 1/fan_in
    bound = 2 * target_std / TRUNCATED_NORMAL_STD_CORRECTION
    assert weight.abs().max() <= bound + 1e-7
    assert weight.abs().max() > 0.99 * bound  # really truncated at 2 std, not narrower
    assert weight.std().item() == pytest.approx(target_std, rel=0.01)
    assert abs(weight.mean().item()) < 0.01 * target_std * 10


def test_dense_init_is_glorot_uniform_with_zero_bias(inception_network):
    dense = inception_network.dense
    limit = math.sqrt(6.0 / (512 + 10))
    w = dense.weight.detach()
    assert w.abs().max() <= limit and w.abs().max() > 0.95 * limit
    assert w.std().item() == pytest.approx(limit / math.sqrt(3), rel=0.05)
    assert torch.count_nonzero(dense.bias) == 0


def test_bn_starts_at_identity(inception_network):
    for bn in (m for m in inception_network.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
        assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)


def test_init_is_deterministic_given_the_generator():
    cell = make_cell(TRUNCATION)
    a = build_network(cell, SMOKE, generator=seeded(5)).state_dict()
    b = build_network(cell, SMOKE, generator=seeded(5)).state_dict()
    c = build_network(cell, SMOKE, generator=seeded(6)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["stem.conv.weight"], c["stem.conv.weight"])
    torch.manual_seed(9)
    d = build_network(cell, SMOKE).state_dict()
    torch.manual_seed(9)
    e = build_network(cell, SMOKE).state_dict()
    assert all(torch.equal(d[k], e[k]) for k in d)


# --- BatchNorm over shards ------------------------------------------------------------------


def _normalize(x, gamma, beta, eps):
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * gamma.view(1, -1, 1, 1) + beta.view(1, -1, 1, 1)


def test_sharded_bn_normalizes_each_shard_with_its_own_statistics():
    torch.manual_seed(0)
    bn = ShardedBatchNorm2d(5, shard_size=4, momentum=0.003, eps=1e-5)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    x = torch.randn(8, 5, 3, 3) * 3 + torch.arange(8.0).view(8, 1, 1, 1)  # shards differ
    out = bn(x)
    expected = torch.cat([_normalize(x[:4], bn.weight, bn.bias, 1e-5),
                          _normalize(x[4:], bn.weight, bn.bias, 1e-5)])
    assert torch.allclose(out, expected, atol=1e-5)
    whole = _normalize(x, bn.weight, bn.bias, 1e-5)
    assert not torch.allclose(out, whole, atol=1e-2)


def test_sharded_bn_running_statistics_follow_shard_zero():
    torch.manual_seed(1)
    bn = ShardedBatchNorm2d(4, shard_size=6, momentum=0.003, eps=1e-5)
    x = torch.randn(12, 4, 5, 5)
    x[6:] += 10.0  # a second shard that would move an averaged update a lot
    bn(x)
    shard = x[:6]
    mean = shard.mean(dim=(0, 2, 3))
    var = shard.var(dim=(0, 2, 3), unbiased=True)  # TF's fused BN and PyTorch both use n-1 here
    assert torch.allclose(bn.running_mean, 0.003 * mean, atol=1e-6)
    assert torch.allclose(bn.running_var, 0.997 + 0.003 * var, atol=1e-6)
    bn.eval()  # evaluation uses the running statistics
    y = bn(x)
    expected = (x - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
        bn.running_var.view(1, -1, 1, 1) + 1e-5
    )
    assert torch.allclose(y, expected, atol=1e-5)


def test_whole_batch_statistics_when_sharding_is_off_or_batch_is_small():
    torch.manual_seed(2)
    x = torch.randn(8, 3, 2, 2)
    reference = nn.BatchNorm2d(3, momentum=0.003, eps=1e-5)
    for shard_size in (0, 8, 16):
        bn = ShardedBatchNorm2d(3, shard_size=shard_size, momentum=0.003, eps=1e-5)
        reference.reset_running_stats()
        assert torch.allclose(bn(x), reference(x), atol=1e-6)
        assert torch.allclose(bn.running_mean, reference.running_mean)


def test_training_network_treats_shards_independently():
    """In train mode the first shard's logits do not depend on the other shard's images."""
    network = build_network(make_cell(INCEPTION_README), SMOKE, generator=seeded(3)).train()
    x = torch.randn(32, 3, 32, 32)
    y = torch.randn(32, 3, 32, 32)
    y[:16] = x[:16]
    with torch.no_grad():
        a, b = network(x), network(y)
    assert torch.allclose(a[:16], b[:16], atol=1e-5)
    assert not torch.allclose(a[16:], b[16:], atol=1e-3)
    whole = build_network(
        make_cell(INCEPTION_README), replace(SMOKE, bn_shard_size=0), generator=seeded(3)
    ).train()
    with torch.no_grad():
        assert not torch.allclose(whole(x)[:16], whole(y)[:16], atol=1e-3)


# --- nasfarm space describe -----------------------------------------------------------------


def _describe(*args: str, input: str | None = None):
    return CliRunner().invoke(cli_main, ["space", "describe", *args], input=input)


def test_describe_one_cell():
    matrix, interior, digest, params = CONV3X3_SKIP
    result = _describe("--matrix", json.dumps(matrix), "--ops", ",".join(["input", *interior, "output"]))
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record == {
        "hash": digest,
        "vertices": 3,
        "edges": 3,
        "trainable_parameters": params,
        "flops": cost.forward_flops(make_cell(CONV3X3_SKIP)),
    }


def test_describe_json_lines_with_ops_or_labels(tmp_path):
    lines = [
        json.dumps({"matrix": SPACE_MAXIMUM[0], "ops": ["input", *SPACE_MAXIMUM[1], "output"]}),
        "",
        json.dumps({"matrix": SPACE_MINIMUM[0], "labels": [-1, 2, 2, 2, 2, 2, -2]}),
    ]
    path = tmp_path / "cells.jsonl"
    path.write_text("\n".join(lines) + "\n")
    result = _describe("--input", str(path))
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [r["trainable_parameters"] for r in records] == [49_979_274, 227_274]
    assert [r["hash"] for r in records] == [SPACE_MAXIMUM[2], SPACE_MINIMUM[2]]
    smoke = _describe("--input", "-", "--profile", "smoke", input=lines[0] + "\n")
    assert smoke.exit_code == 0, smoke.output
    small = json.loads(smoke.output)["trainable_parameters"]
    assert small == cost.trainable_parameters(make_cell(SPACE_MAXIMUM), SMOKE)


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["--matrix", "[[0,1],[0,0]]", "--ops", "input,conv9x9,output"], None, "o"),
        (["--matrix", "[[0,1],[0,0]]", "--ops", "input,output,output"], None, "o"),
        (["--input", "-"], '{"matrix": [[0,1],[0,0]]}\n', "line 1"),
        (["--input", "-"], "not json\n", "line 1"),
        (["--input", "-"], '{"matrix": [[0,0],[0,0]], "ops": ["input","output"]}\n', "no path"),
        (["--matrix", "[[0,1],[0,0]]"], None, "--ops"),
        ([], None, "--matrix"),
    ],
)
def test_describe_bad_input_is_a_one_line_error_with_status_2(args, stdin, message):
    result = _describe(*args, input=stdin)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert message in result.output


def test_describe_formula_count_equals_module_count(tmp_path):
    lines = [json.dumps({"matrix": c.matrix.tolist(), "ops": list(c.ops)}) for c in random_cells(20, 4)]
    text = "\n".join(lines) + "\n"
    by_module = _describe("--input", "-", input=text)
    by_formula = _describe("--input", "-", "--count", "formula", input=text)
    assert by_module.exit_code == 0 and by_formula.exit_code == 0
    assert by_module.output == by_formula.output
    assert len(by_module.output.splitlines()) == 20


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_build_has_the_cpu_weights():
    cell = make_cell(TRUNCATION)
    cpu = build_network(cell, SMOKE, generator=seeded(8)).state_dict()
    with torch.device("cuda"):
        gpu = build_network(cell, SMOKE, generator=seeded(8)).state_dict()
    assert all(torch.equal(cpu[k], gpu[k].cpu()) for k in cpu)
