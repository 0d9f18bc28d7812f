"""Character LSTM for next-character prediction (LEAF Shakespeare), built from Linear cells.

``nn.LSTM`` runs fused kernels that ``torch.func.vmap`` cannot batch over stacked parameters; an
LSTM written as Linear gates and an explicit loop over time vectorizes over clients and samples
(per-sample gradients for DP-SGD included).

References
----------
Hochreiter & Schmidhuber, "Long Short-Term Memory", Neural Computation 9(8), 1997.
Caldas et al., "LEAF: A Benchmark for Federated Settings", 2018 (the Shakespeare model: 8-dim
embedding, two LSTM layers of 256 units).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fedguard.api import require
from fedguard.errors import ConfigError
from fedguard.models.base import ModelSpec

VOCABULARY = 81  # LEAF's 80 characters + 0 for unknown/padding (fedguard.data.leaf)


class LSTMCell(nn.Module):
    """One LSTM layer step: gates = W_x x + W_h h (input, forget, cell, output)."""

    def __init__(self, inputs: int, hidden: int) -> None:
        super().__init__()
        self.input_gates = nn.Linear(inputs, 4 * hidden)
        self.hidden_gates = nn.Linear(hidden, 4 * hidden, bias=False)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        i, f, g, o = (self.input_gates(x) + self.hidden_gates(h)).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class CharLSTMModule(nn.Module):
    def __init__(self, embedding: int, hidden: int, layers: int, n_classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCABULARY, embedding)
        self.cells = nn.ModuleList(
            LSTMCell(embedding if k == 0 else hidden, hidden) for k in range(layers)
        )
        self.head = nn.Linear(hidden, n_classes)
        self.hidden = hidden

    def forward(self, codes: Tensor) -> Tensor:  # (batch, length) character indices as floats
        x = self.embed(codes.long().clamp(0, VOCABULARY - 1))  # (batch, length, embedding)
        zeros = x.new_zeros(x.shape[0], self.hidden)
        state = [(zeros, zeros) for _ in self.cells]
        for t in range(x.shape[1]):
            inp = x[:, t]
            for k, cell in enumerate(self.cells):
                h, c = cell(inp, *state[k])
                state[k] = (h, c)
                inp = h
        return self.head(state[-1][0])


@dataclass(frozen=True)
class CharLSTM(ModelSpec):
    """Embedding → ``layers`` LSTM layers of ``hidden`` units → next-character logits."""

    embedding: int = 8
    hidden: int = 256
    layers: int = 2

    def __post_init__(self) -> None:
        require(self.embedding >= 1, "model.embedding", "at least 1")
        require(self.hidden >= 1, "model.hidden", "at least 1")
        require(self.layers >= 1, "model.layers", "at least 1")

    def build(self, input_shape: tuple[int, ...], n_classes: int) -> nn.Module:
        if len(input_shape) != 1:
            raise ConfigError(
                "model 'char_lstm' needs character sequences shaped (length,) (a LEAF text "
                f"dataset); this dataset's samples have shape {input_shape}."
            )
        return CharLSTMModule(self.embedding, self.hidden, self.layers, n_classes)
