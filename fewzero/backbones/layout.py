"""Memory layout of image batches: channels-last where it can be had."""
from __future__ import annotations

import torch


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, H, W) in channels-last memory order; unchanged under ``torch.func.vmap``, which cannot query
    layouts (torch 2.x: "NYI: querying is_contiguous inside of vmap"), so that meta-batches can be vmapped."""
    try:
        return x.contiguous(memory_format=torch.channels_last)
    except RuntimeError as exc:
        if "vmap" not in str(exc):
            raise
        return x
