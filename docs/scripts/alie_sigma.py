"""σ against |μ| of honest one-minibatch gradients at a finished run's model.

docs/reproductions.md (Baruch et al. 2019) quotes these numbers. For the run
directory given, it rebuilds the run's data and model, and at the initial model and
at the run's final model (``model.safetensors``) draws one minibatch of
``training.batch_size`` rows per worker (the whole shard without
``training.local_steps``), takes each worker's gradient and prints, per coordinate
over the workers, the norms of the mean μ and of z·σ (z = 0.583, ddof 0, as the
colluders estimate them), the median σ/|μ| and the share of coordinates with
z·σ > |μ|; then at the final model cos(μ, σ), the class-uniform share of the last
layer's σ, and the test loss and accuracy after moving the weights lr·k·z·σ along
the push (k = 1, 10, 100 unopposed steps) against a random direction of that norm.

    python docs/scripts/alie_sigma.py RUN_DIR
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from safetensors.numpy import load_file

from simulation.fl.data import build_federated_data
from simulation.fl.models import build_model, load_numpy
from simulation.scenario.load import load_scenario

Z = 0.583


def say(text: str) -> None:
    sys.stdout.write(text + "\n")


def main(run: str) -> None:
    torch.set_num_threads(1)
    sc = load_scenario(f"{run}/scenario.yaml")
    data = build_federated_data(sc.dataset, sc.partition, sc.clients.count, sc.seed)
    gen = torch.Generator().manual_seed(0)
    model = build_model(sc.model, data.input_shape, data.num_classes, gen)
    params = list(model.parameters())
    batch = sc.training.batch_size if sc.training.local_steps else 10**9

    def grads() -> np.ndarray:
        out = []
        for c in range(sc.clients.count):
            x, y = data.client(c)
            idx = torch.randperm(len(y), generator=gen)[:batch]
            xb = torch.from_numpy(np.asarray(x, np.float32)).reshape(-1, *data.input_shape)
            model.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xb[idx]), torch.from_numpy(y)[idx])
            loss.backward()
            out.append(np.concatenate([p.grad.numpy().ravel() for p in params]))  # type: ignore[union-attr]
        return np.stack(out)

    def report(tag: str) -> tuple[np.ndarray, np.ndarray]:
        g = grads()
        mu, sd = g.mean(0), g.std(0)
        ratio = sd / np.maximum(np.abs(mu), 1e-12)
        say(
            f"{tag}: |mu| {np.linalg.norm(mu):.4f}  |z sigma| {np.linalg.norm(Z * sd):.4f}  "
            f"median sigma/|mu| {np.median(ratio):.2f}  "
            f"coords with z sigma > |mu| {np.mean(Z * sd > np.abs(mu)):.2f}"
        )
        return mu, sd

    report("initial model")
    load_numpy(model, load_file(f"{run}/model.safetensors"))
    mu, sd = report("final model")
    say(f"cos(mu, sigma) {float(mu @ sd / np.linalg.norm(mu) / np.linalg.norm(sd)):.3f}")
    offs = np.cumsum([0] + [p.numel() for p in params])
    last_w = sd[offs[-3] : offs[-2]].reshape(params[-2].shape)
    last_b = sd[offs[-2] : offs[-1]]
    energy = np.linalg.norm(last_w) ** 2 + np.linalg.norm(last_b) ** 2
    uniform = np.linalg.norm(last_w.mean(0)) ** 2 * len(last_w) + last_b.mean() ** 2 * len(last_b)
    say(f"last layer: class-uniform share of sigma's energy {uniform / energy:.3f}")
    x_t = torch.from_numpy(np.asarray(data.x_test, np.float32)).reshape(-1, *data.input_shape)
    y_t = torch.from_numpy(data.y_test.astype(np.int64))
    base = [p.detach().clone() for p in params]

    @torch.no_grad()
    def at(delta: np.ndarray) -> str:
        for p, b0, lo, hi in zip(params, base, offs[:-1], offs[1:], strict=True):
            p.copy_(b0 + torch.from_numpy(delta[lo:hi].reshape(p.shape)).float())
        out = model(x_t)
        acc = float((out.argmax(1) == y_t).float().mean())
        return f"loss {float(torch.nn.functional.cross_entropy(out, y_t)):.4f} acc {acc:.4f}"

    lr = sc.training.lr
    say(f"at the model: {at(0 * sd)}")
    for k in (1, 10, 100):
        r = np.random.default_rng(0).standard_normal(len(sd))
        r *= np.linalg.norm(Z * sd) / np.linalg.norm(r)
        say(f"{k} steps: along the push {at(lr * k * Z * sd)}  random {at(lr * k * r)}")


if __name__ == "__main__":
    main(sys.argv[1])
