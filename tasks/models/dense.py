"""A^3's dense models: the tabular target autoencoders and the VAE anomaly network.

Target autoencoders (A^3 paper, Table 2; every hidden layer ReLU):

============ ================================
preset       hidden layers
============ ================================
nsl-kdd      200-100-50-25-50-100-200
cicids2018   150-80-40-20-40-80-150
creditcard   50-25-10-5-10-25-50
============ ================================

The hidden layers are named ``dense_1`` .. ``dense_k`` (each a Linear followed by its ReLU, so
a hook on the name sees the activated output, as A^3's alarm network reads it); the output
layer ``output`` maps back to the input width (sigmoid for data scaled to [0, 1]).

The VAE (A^3 outlook, experiment 4): dense 800-400-100 encoder, a 25-dimensional Gaussian code,
100-400-800 decoder; counterexamples are decoded from ``z = mu + N(0, noise_std^2)`` with
``noise_std = 5`` (the authors' code).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

DENSE_PRESETS: dict[str, tuple[int, ...]] = {
    "nsl-kdd": (200, 100, 50, 25, 50, 100, 200),
    "cicids2018": (150, 80, 40, 20, 40, 80, 150),
    "creditcard": (50, 25, 10, 5, 10, 25, 50),
}

VAE_HIDDEN: tuple[int, ...] = (800, 400, 100)
VAE_LATENT = 25


class _DenseAct(nn.Module):
    """Linear followed by its activation (hooking it sees the activated output)."""

    def __init__(self, d_in: int, d_out: int, act: nn.Module) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.linear(x))


def _output_act(name: str) -> nn.Module:
    acts = {"sigmoid": nn.Sigmoid, "linear": nn.Identity, "relu": nn.ReLU}
    if name not in acts:
        raise ValueError(f"output_activation must be one of {sorted(acts)}, got {name!r}")
    return acts[name]()


class DenseAutoencoder(nn.Module):
    """Symmetric dense autoencoder: input (N, n_features) -> reconstruction (N, n_features).

    ``hidden``: widths of the hidden layers (a preset name of :data:`DENSE_PRESETS` or a list);
    ``output_activation``: ``sigmoid`` (inputs in [0, 1]), ``linear`` or ``relu``.
    """

    def __init__(self, n_features: int, hidden: Sequence[int] | str = "nsl-kdd",
                 output_activation: str = "sigmoid") -> None:
        super().__init__()
        if isinstance(hidden, str):
            if hidden not in DENSE_PRESETS:
                raise ValueError(f"hidden: unknown preset {hidden!r}; known: {sorted(DENSE_PRESETS)}")
            hidden = DENSE_PRESETS[hidden]
        hidden = tuple(int(h) for h in hidden)
        if n_features < 1 or not hidden or min(hidden) < 1:
            raise ValueError(f"n_features and hidden widths must be >= 1, got {n_features}, {hidden}")
        self.n_features = int(n_features)
        self.hidden = hidden
        self.output_activation = output_activation
        layers: list[tuple[str, nn.Module]] = []
        d = self.n_features
        for i, h in enumerate(hidden, 1):
            layers.append((f"dense_{i}", _DenseAct(d, h, nn.ReLU())))
            d = h
        layers.append(("output", _DenseAct(d, self.n_features, _output_act(output_activation))))
        self.layers = nn.Sequential(OrderedDict(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, n_features) -> (N, n_features)."""
        return self.layers(x)

    def named_activation_layers(self) -> OrderedDict[str, nn.Module]:
        """Every layer by name in forward order (hidden ``dense_*`` then ``output``)."""
        return OrderedDict(self.layers.named_children())

    def hidden_layer_names(self) -> list[str]:
        """The ReLU layers A^3's alarm network reads (every layer except the output)."""
        return [n for n in self.named_activation_layers() if n != "output"]

    def config(self) -> dict[str, object]:
        return {"class": "DenseAutoencoder",
                "kwargs": {"n_features": self.n_features, "hidden": list(self.hidden),
                           "output_activation": self.output_activation}}


class VAE(nn.Module):
    """Dense variational autoencoder, input (N, n_features) in [0, 1].

    Encoder ``hidden`` (default 800-400-100, ReLU) -> ``mu``, ``logvar`` (N, latent);
    decoder the mirror image with a sigmoid output. ``forward(x)`` returns the reconstruction
    (``return_stats=True``: also ``mu`` and ``logvar``); sampling uses the reparameterisation
    trick in training mode and the mean in eval mode.
    """

    def __init__(self, n_features: int, hidden: Sequence[int] = VAE_HIDDEN,
                 latent: int = VAE_LATENT) -> None:
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if n_features < 1 or latent < 1 or not hidden:
            raise ValueError(f"bad VAE sizes: n_features={n_features}, hidden={hidden}, latent={latent}")
        self.n_features, self.hidden, self.latent = int(n_features), hidden, int(latent)
        enc: list[tuple[str, nn.Module]] = []
        d = self.n_features
        for i, h in enumerate(hidden, 1):
            enc.append((f"enc_{i}", _DenseAct(d, h, nn.ReLU())))
            d = h
        self.encoder = nn.Sequential(OrderedDict(enc))
        self.mu = nn.Linear(d, self.latent)
        self.logvar = nn.Linear(d, self.latent)
        dec: list[tuple[str, nn.Module]] = []
        d = self.latent
        for i, h in enumerate(reversed(hidden), 1):
            dec.append((f"dec_{i}", _DenseAct(d, h, nn.ReLU())))
            d = h
        dec.append(("output", _DenseAct(d, self.n_features, nn.Sigmoid())))
        self.decoder = nn.Sequential(OrderedDict(dec))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, n_features) -> (mu, logvar), each (N, latent)."""
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(N, latent) -> (N, n_features) in (0, 1)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, return_stats: bool = False):  # type: ignore[override]
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        rec = self.decode(z)
        return (rec, mu, logvar) if return_stats else rec

    @torch.no_grad()
    def anomalies(self, x: torch.Tensor, noise_std: float = 5.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """Counterexamples for ``x`` (N, n_features): decode ``mu(x) + N(0, noise_std^2)``."""
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std}")
        mu, _ = self.encode(x)
        noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        return self.decode(mu + noise_std * noise)

    def config(self) -> dict[str, object]:
        return {"class": "VAE", "kwargs": {"n_features": self.n_features,
                                           "hidden": list(self.hidden), "latent": self.latent}}


def dense_autoencoder(preset: str, n_features: int, output_activation: str = "sigmoid") -> DenseAutoencoder:
    """A^3's target autoencoder for ``preset`` (nsl-kdd, cicids2018, creditcard)."""
    return DenseAutoencoder(n_features, preset, output_activation)
