"""Dense (fully connected) autoencoders, as Keras ``Sequential([Dense, ...])`` builds them."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..losses import activity_l1
from .base import AEOutput, Autoencoder, output
from .layers import _init_torch, glorot_uniform_, make_activation


class DenseAutoencoder(Autoencoder):
    """``encoder``: Dense layers down to the code; ``decoder``: Dense layers back to the input.

    ``forward(x: (B, D)) -> AEOutput``. The code layer is the encoder's last layer; its L1
    activity penalty (``cfg.activity_l1``) is Keras' ``λ·Σ|h| / B``.
    """

    def __init__(self, cfg, generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        self.config = cfg
        self.activity_l1 = float(getattr(cfg, "activity_l1", 0.0))
        sizes = [cfg.input_dim] + [l.size for l in cfg.encoder] + [l.size for l in cfg.decoder]
        acts = [l.activation for l in cfg.encoder] + [l.activation for l in cfg.decoder]
        linears = [nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:])]
        if cfg.init == "keras":
            for lin in linears:
                glorot_uniform_(lin.weight, generator)
                nn.init.zeros_(lin.bias)
        else:  # PyTorch's default distributions, drawn from the generator (reproducible)
            for lin in linears:
                _init_torch(lin, generator)
        n_enc = len(cfg.encoder)
        enc, dec = [], []
        for k, (lin, act) in enumerate(zip(linears, acts)):
            (enc if k < n_enc else dec).extend([lin, make_activation(act)])
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.output_activation = acts[-1]

    def forward(self, x: torch.Tensor, rng: Optional[torch.Generator] = None) -> AEOutput:
        code = self.encoder(x)
        pre = self.decoder[:-1](code)
        logits = pre if self.output_activation == "sigmoid" else None
        recon = self.decoder[-1](pre)
        terms = {"activity_l1": activity_l1(code, self.activity_l1)} if self.activity_l1 > 0 else {}
        return output(recon, code, logits, terms)

    def linears(self) -> list[nn.Linear]:
        return [m for m in list(self.encoder) + list(self.decoder) if isinstance(m, nn.Linear)]


def build_dense(cfg, generator: Optional[torch.Generator] = None) -> DenseAutoencoder:
    return DenseAutoencoder(cfg, generator)
