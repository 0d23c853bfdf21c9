"""A^3's anomaly networks: generators of counterexamples for training the alarm network.

Both take the batch of normal records x (B, ...) and return counterexamples of the same shape,
dtype and device; randomness comes from the ``generator`` argument (a CPU ``torch.Generator``;
None: torch's global RNG), so a seeded caller gets the same counterexamples on any device.

* :class:`GaussianNoise` - N(mean, std^2) noise of x's shape, ignoring x's values (the paper's
  N(0.5, 1) for inputs scaled to [0, 1]; experiments 1-3);
* :class:`VAEAnomaly` - a trained :class:`~tasks.models.dense.VAE` decoding
  ``z = mu(x) + N(0, noise_std^2)`` (``noise_std`` 5 as in the authors' code; experiment 4).

A counterexample generator only teaches the alarm something useful when its output lies
outside the normal data. The VAE's does not always: latent dimensions the VAE does not use
(posterior collapse - most of the 25 on MNIST, all of them for a VAE starved of training
records) are ignored by its decoder, so the noise moves nothing there, and an under-trained
decoder maps its few used dimensions back onto typical normal records. Trained on those, the
alarm learns "typical = anomalous" and ranks held-out anomalies *below* normal records (our
first Table 4). :meth:`tasks.detectors.a3.A3Detector.counterexample_check` measures where the
counterexamples lie; the experiment runner trains the VAE on every normal training record.
"""

from __future__ import annotations

import torch
from torch import nn

from tasks.models.dense import VAE


class GaussianNoise(nn.Module):
    """Counterexamples N(``mean``, ``std``^2) in the shape of the input (no parameters)."""

    def __init__(self, mean: float = 0.5, std: float = 1.0) -> None:
        super().__init__()
        if not std >= 0.0:
            raise ValueError(f"std must be >= 0, got {std!r}")
        self.mean, self.std = float(mean), float(std)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x (B, ...) -> noise (B, ...) with x's dtype and device; x's values are not used."""
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float32)
        return (noise * self.std + self.mean).to(device=x.device, dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean}, std={self.std}"


class VAEAnomaly(nn.Module):
    """Counterexamples decoded by a trained VAE from ``mu(x) + N(0, noise_std^2)``: ``mu(x)``
    is the encoder mean of each record of the batch (the normal training records) and the
    noise is added to every latent dimension, as in the authors' ``predict_anomaly`` (their
    log-variance is zeroed, so the posterior's own spread is not used).

    ``vae``: a :class:`~tasks.models.dense.VAE` trained on normal records (it is not trained
    here); x (B, ...) is flattened to (B, vae.n_features) and the decoded (B, n_features) in
    (0, 1) reshaped back to x's shape.
    """

    def __init__(self, vae: VAE, noise_std: float = 5.0) -> None:
        super().__init__()
        if not noise_std >= 0.0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
        self.vae = vae
        self.noise_std = float(noise_std)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """x (B, ...) with prod(...) == vae.n_features -> counterexamples (B, ...) in (0, 1)."""
        flat = x.reshape(len(x), -1)
        if flat.shape[1] != self.vae.n_features:
            raise ValueError(f"x: {flat.shape[1]} values per record, the VAE takes "
                             f"{self.vae.n_features}")
        self.vae.eval()
        out = self.vae.anomalies(flat.float(), noise_std=self.noise_std, generator=generator)
        return out.reshape(x.shape).to(dtype=x.dtype)

    def extra_repr(self) -> str:
        return f"noise_std={self.noise_std}"
