"""Small synthetic networks shared by the lowbit.model tests, and their seeded inputs.

* ``Net``: an Embedding, a Conv2d, Linear layers and a LayerNorm (every layer type the configs target,
  and one they do not), fed by ``net_inputs``;
* ``Stack``: a small transformer-like stack (a ModuleList of residual blocks whose q/k/v-style
  projections read the same tensor) with a few input channels carrying large activations, the
  situation AWQ and SmoothQuant address, fed by ``stack_batches``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

D = 64  # width of Stack's hidden states


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(50, 32)
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.encoder = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32))
        self.head = nn.Linear(32 + 8, 4)
        self.norm = nn.LayerNorm(32)

    def forward(self, ids: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.encoder(self.emb(ids).mean(dim=1)))
        c = self.conv(img).mean(dim=(2, 3))
        return self.head(torch.cat([h, c], dim=1))


def _inputs(n: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 50, (n, 7), generator=g), torch.randn(n, 1, 8, 8, generator=g)


@pytest.fixture
def net() -> Net:
    """A fresh Net in eval mode (the same weights every time)."""
    return Net().eval()


@pytest.fixture
def make_net() -> Callable[[], Net]:
    """``make_net()``: another fresh Net in eval mode, with the same weights as ``net``."""
    return lambda: Net().eval()


@pytest.fixture
def net_inputs() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """``net_inputs(n=16, seed=1)``: a seeded batch (token ids, images) for Net."""
    return _inputs


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.up, self.down = nn.Linear(D, 2 * D), nn.Linear(2 * D, D)

    def forward(self, h: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        attn = torch.tanh(self.q(h)) * self.k(h) + self.v(h)
        return h + scale * self.down(torch.relu(self.up(h + attn)))


class Stack(nn.Module):
    """Embedding-like input projection, 3 blocks in a ModuleList, a head; keyword arg passed to blocks."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(16, D)
        self.blocks = nn.ModuleList([Block() for _ in range(3)])
        self.head = nn.Linear(D, 8)
        self.gain = torch.ones(D)
        self.gain[:4] = 25.0  # outlier channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x) * self.gain
        for block in self.blocks:
            h = block(h, scale=0.5)
        return self.head(h)


def _batches(n: int = 4, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(32, 16, generator=g) for _ in range(n)]


def _output_mse(model: nn.Module, reference: nn.Module, batches: list[torch.Tensor]) -> float:
    with torch.no_grad():
        return float(sum(((model(b) - reference(b)) ** 2).mean() for b in batches) / len(batches))


@pytest.fixture(scope="module")
def stack() -> Stack:
    """The float Stack in eval mode, shared by a test module (tests deep-copy it before changing it)."""
    return Stack().eval()


@pytest.fixture
def stack_batches() -> Callable[..., list[torch.Tensor]]:
    """``stack_batches(n=4, seed=1)``: n seeded (32, 16) batches for Stack."""
    return _batches


@pytest.fixture
def output_mse() -> Callable[..., float]:
    """``output_mse(model, reference, batches)``: mean over batches of the float output MSE between two models."""
    return _output_mse
