"""Run by tests/test_torchrun.py under torchrun: train the zero-shot feature backbone on tiny random images.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/features_worker.py OUT.pt

A network without batch norm stands in for the feature backbones (whose batch norm is per process on CPU), so
that one process and two train the same weights up to float rounding. Process 0 saves the backbone's weights.
"""
import sys

import torch
from torch import nn

from fewzero.distributed import process_group, rank_and_world
from fewzero.worker_exit import exit_process
from fewzero.zsl import features


def tiny_network(backbone: str) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())


def train_tiny() -> tuple[dict, int]:
    """(the trained backbone's weights, processes); ``features._build`` must be ``tiny_network``."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 12, 12), dtype=torch.uint8, generator=generator)
    labels = torch.arange(40) % 4
    net, _, _, facts = features.train_backbone(images, labels, torch.arange(32), epochs=2, batch_size=8,
                                               progress=False)
    return net.state_dict(), facts["processes"]


def main(out: str) -> None:
    features._build = tiny_network
    with process_group("cpu"):
        model, processes = train_tiny()
        if rank_and_world()[0] == 0:
            torch.save({"model": model, "processes": processes}, out)


if __name__ == "__main__":
    main(sys.argv[1])
    exit_process(0)  # as fewzero's own command does under torchrun
