"""MTCNN's three small networks (Zhang et al. 2016) and the weights that come inside the
``facenet-pytorch`` wheel (MIT licence, Timothy Esler; converted from the authors' Caffe model).

Only the three ``.pt`` state dicts are used: the wheel is found through its installed-files
record, never imported (its release pins torch < 2.3, so the Makefile installs it with
``--no-deps``). Each file's sha256 is checked before ``torch.load`` reads it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

PACKAGE = "facenet-pytorch"
WEIGHTS_SHA256 = {
    "pnet": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}


class WeightsUnavailable(RuntimeError):
    """The MTCNN weight files are absent or not the files whose hashes are pinned here."""


def _conv_stack(channels: list[int], kernels: list[int], pools: list[int | None]) -> nn.Sequential:
    """conv -> PReLU (-> max-pool) blocks, named conv1, prelu1, pool1 ... as in the state dicts."""
    layers: dict[str, nn.Module] = {}
    for i, (kernel, pool) in enumerate(zip(kernels, pools, strict=True), start=1):
        layers[f"conv{i}"] = nn.Conv2d(channels[i - 1], channels[i], kernel)
        layers[f"prelu{i}"] = nn.PReLU(channels[i])
        if pool is not None:
            # ceil_mode: Caffe's pooling, which the weights were trained with.
            layers[f"pool{i}"] = nn.MaxPool2d(pool, 2, ceil_mode=True)
    return nn.Sequential(OrderedDict(layers))


class PNet(nn.Module):
    """Fully convolutional proposal net: a 12x12 window per output cell, stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.body = _conv_stack([3, 10, 16, 32], [3, 3, 3], [2, None, None])
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.body(x)
        return torch.softmax(self.conv4_1(x), dim=1)[:, 1], self.conv4_2(x)


class _Head(nn.Module):
    """R-Net and O-Net: a conv stack, a dense layer, then score / box (/ landmark) heads."""

    def __init__(self, stack: nn.Sequential, flat: int, hidden: int, dense: int) -> None:
        super().__init__()
        self.body = stack
        self.dense = nn.Linear(flat, hidden)
        self.prelu = nn.PReLU(hidden)
        self.score = nn.Linear(hidden, 2)
        self.box = nn.Linear(hidden, 4)
        self.landmarks = nn.Linear(hidden, 10) if dense == 6 else None
        self.dense_index = dense

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        x = self.body(x)
        # The converted weights expect Caffe's (W, H, C) flattening order.
        x = self.prelu(self.dense(x.permute(0, 3, 2, 1).flatten(1)))
        points = self.landmarks(x) if self.landmarks is not None else None
        return torch.softmax(self.score(x), dim=1)[:, 1], self.box(x), points


def rnet() -> _Head:
    return _Head(_conv_stack([3, 28, 48, 64], [3, 3, 2], [3, 3, None]), 576, 128, 5)


def onet() -> _Head:
    return _Head(_conv_stack([3, 32, 64, 64, 128], [3, 3, 3, 2], [3, 3, 2, None]), 1152, 256, 6)


def _renamed(state: dict[str, torch.Tensor], dense: int | None) -> dict[str, torch.Tensor]:
    """facenet-pytorch's flat names (conv1.weight, dense5_1.bias ...) -> this module's."""
    out = {}
    for key, value in state.items():
        if key.startswith("conv4_") or dense is None:
            name = key if key.startswith("conv4_") else f"body.{key}"
        elif key.startswith(f"dense{dense}_"):
            head = {"1": "score", "2": "box", "3": "landmarks"}[key.split("_")[1][0]]
            name = f"{head}.{key.split('.')[-1]}"
        elif key.startswith(f"dense{dense - 1}") or key.startswith(f"prelu{dense - 1}"):
            name = ("dense." if key.startswith("dense") else "prelu.") + key.split(".")[-1]
        else:
            name = f"body.{key}"
        out[name] = value
    return out


def weights_dir() -> Path:
    """Where the installed facenet-pytorch wheel put its ``data/*.pt`` files."""
    try:
        files = importlib.metadata.distribution(PACKAGE).files or []
    except importlib.metadata.PackageNotFoundError as error:
        raise WeightsUnavailable(
            f"{PACKAGE} is not installed (make install adds it with --no-deps)"
        ) from error
    for file in files:
        if file.name == "pnet.pt":
            return Path(str(file.locate())).parent
    raise WeightsUnavailable(f"{PACKAGE} is installed but carries no data/pnet.pt")


def _verified(path: Path, expected: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsUnavailable(f"MTCNN weights {path} are missing")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise WeightsUnavailable(f"{path} has sha256 {digest}, expected {expected}")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_nets(folder: Path | None = None) -> tuple[PNet, _Head, _Head]:
    """The three nets in eval mode with the verified weights; WeightsUnavailable otherwise."""
    folder = folder or weights_dir()
    nets: list[nn.Module] = []
    for name, net, dense in (("pnet", PNet(), None), ("rnet", rnet(), 5), ("onet", onet(), 6)):
        state = _renamed(_verified(folder / f"{name}.pt", WEIGHTS_SHA256[name]), dense)
        net.load_state_dict(state)
        nets.append(net.eval().requires_grad_(False))
    return nets[0], nets[1], nets[2]  # type: ignore[return-value]
