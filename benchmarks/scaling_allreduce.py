"""All-reduce time of one training step's gradient buffer, in the gloo group torchrun starts.

    torchrun --standalone --nproc-per-node 2 benchmarks/scaling_allreduce.py --bytes 451000 --out /tmp/a.json

Process 0 writes ``{"bytes", "processes", "seconds_per_all_reduce" (median of --repeats), "samples"}`` to --out.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.distributed as dist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, required=True, help="size of the float32 buffer all-reduced per step")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    dist.init_process_group("gloo", init_method="env://")
    buffer = torch.randn(max(1, args.bytes // 4))
    for _ in range(20):  # warm-up: connections, allocations
        dist.all_reduce(buffer)
    samples = []
    for _ in range(args.repeats):
        dist.barrier()
        started = time.perf_counter()
        dist.all_reduce(buffer)
        samples.append(time.perf_counter() - started)
    if dist.get_rank() == 0:
        with open(args.out, "w") as f:
            json.dump({"bytes": buffer.numel() * 4, "processes": dist.get_world_size(),
                       "seconds_per_all_reduce": statistics.median(samples), "samples": len(samples)}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
