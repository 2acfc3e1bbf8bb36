"""The parts of benchmarks/scaling.py that are not measurement: gradient sizes, the many-GPU model, the report."""
from __future__ import annotations

import math
import statistics

SETTINGS = [("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2), ("2 processes, 1 thread each", 2, 1)]
TWO = SETTINGS[2][0]

# NCCL all-reduce bus bandwidth ("busbw" of nccl-tests' all_reduce_perf at large messages). Assumptions with sources:
BUSBW = {
    "in_node": (450e9, "8x H100 SXM5 over NVLink/NVSwitch: 460-480 GB/s busbw (Alaya NeW, 'NCCL-tests in practice', "
                       "docs.alayanew.com/en/docs/tech-blog/2026-05-06-nccl-tests); we take 450 GB/s"),
    "across_nodes": (35e9, "2 nodes of 8x H200 NVL with 4x ConnectX-7 RoCE: ~35 GB/s peak busbw (kubernetes.recipes, "
                           "'NCCL All-Reduce Benchmarking on Multi-Node GPUs')"),
}
LATENCY_S = 10e-6  # per tree level (our assumption, no source: small-message NCCL latency is tens of microseconds)
GPUS = (8, 64, 512)
STEP_SECONDS = (1e-3, 1e-2)  # assumed GPU compute time per step (not measured: no GPU here)


def gradient_bytes(workload: str) -> int:
    """Bytes all-reduced per optimizer step: every trainable float32 parameter (+ 2 flags for episodic training)."""
    from fewzero.checkpoint import build_learner
    from fewzero.config import load_config
    from fewzero.pretrain import pretrain_config
    from fewzero.registry import BACKBONES
    from fewzero.train import load_split
    from fewzero.transfer.objectives import create_objective

    if workload == "pretrain":
        config = pretrain_config("omniglot")
        backbone = BACKBONES.create(config.backbone, in_channels=1, **config.backbone_args)
        classes = len(load_split(config, config.train_subset, progress=False).class_names)
        objective = create_objective(config.objective, 64, classes)
        params = [*backbone.parameters(), *objective.parameters()]
        return 4 * sum(p.numel() for p in params if p.requires_grad)
    learner = build_learner(load_config(workload, "omniglot"))
    return 4 * sum(p.numel() for p in learner.parameters() if p.requires_grad) + 4 * 2


def comm_seconds(gpus: int, n_bytes: int) -> float:
    """Model of one NCCL all-reduce: tree latency + ring bandwidth term (busbw = algbw x 2(N-1)/N)."""
    busbw = BUSBW["in_node" if gpus <= 8 else "across_nodes"][0]
    return 2 * math.ceil(math.log2(gpus)) * LATENCY_S + 2 * (gpus - 1) / gpus * n_bytes / busbw


def speedup(gpus: int, n_bytes: int, step_seconds: float) -> float:
    """Weak scaling: each GPU does the same work per step; the step waits for the all-reduce (no overlap)."""
    return gpus * step_seconds / (step_seconds + comm_seconds(gpus, n_bytes))


def summary(runs: list[dict]) -> dict:
    out: dict = {}
    for run in runs:
        out.setdefault(run["workload"], {}).setdefault(run["setting"], []).append(run)
    return {w: {s: {"runs": len(rs), "per_second": statistics.median(r["per_second"] for r in rs),
                    "wall_seconds": statistics.median(r["wall_seconds"] for r in rs),
                    "step_seconds": statistics.median(r["train_seconds"] / r["steps"] for r in rs),
                    "val_accuracy": [r["val_accuracy"] for r in rs], "unit": rs[0]["unit"], "work": rs[0]["work"]}
                for s, rs in settings.items()} for w, settings in out.items()}


def render(result: dict) -> str:
    table = summary(result["runs"])
    p = result["provenance"]
    lines = ["# Scaling out with torchrun: one process against two on this machine", "",
             "Each run is `fewzero train` / `fewzero pretrain` with a shipped config, cut to a fixed amount of work "
             "and validated once at the end, in fp32 (bf16 autocast is fast only on CPUs with AVX-512 BF16); two processes are started by `--nproc 2` (torch.distributed.run, gloo) "
             "and share each step's episodes or images (tests/test_torchrun.py checks that they train the same model "
             "as one process). Work per second from the run's training clock (start-up and the final validation "
             "excluded); the settings take turns.", "",
             "| workload | setting | runs | work per run | per second (median) | step s (median) | wall s (median) "
             "| validation % after the run |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    ratios = {}
    for workload, settings in table.items():
        for setting, s in settings.items():
            accuracy = ", ".join(f"{a:.2f}" for a in s["val_accuracy"])
            lines.append(f"| {workload} | {setting} | {s['runs']} | {s['work']} {s['unit']} | {s['per_second']:.1f} "
                         f"{s['unit']}/s | {s['step_seconds']:.4f} | {s['wall_seconds']:.1f} | {accuracy} |")
        single = max(s["per_second"] for name, s in settings.items() if name != TWO)
        ratios[workload] = settings[TWO]["per_second"] / single
    lines += ["", "**Speed-up of 2 processes** over the faster single-process setting: " +
              "; ".join(f"{w} **{r:.2f}x**" for w, r in ratios.items()) + "."]
    if "maml" in ratios:
        lines.append(f"Target for MAML: >= 1.35x: {'met' if ratios['maml'] >= 1.35 else 'missed'} "
                     f"({ratios['maml']:.2f}x).")
    lines += ["", "## Communication, measured", "",
              "| workload | bytes all-reduced per step | gloo all-reduce, 2 processes (median) | step time, 2 processes | "
              "share of the step |", "| --- | --- | --- | --- | --- |"]
    for workload, c in result["communication"].items():
        step = table.get(workload, {}).get(TWO, {}).get("step_seconds")
        share = f"{100 * c['all_reduce_seconds'] / step:.1f} %" if step else "–"
        lines.append(f"| {workload} | {c['bytes']:,} | {1e3 * c['all_reduce_seconds']:.3f} ms | "
                     f"{'–' if step is None else f'{1e3 * step:.1f} ms'} | {share} |")
    lines += ["", "## Many GPUs: a model, not a measurement", "",
              "Speed-up over one GPU when each of N GPUs does one GPU's work per step (weak scaling: the meta-batch "
              "or batch grows with N, which changes the optimisation) and the step waits for one NCCL all-reduce of "
              "the bytes above: S(N) = N t / (t + c(N)), with c(N) = 2 ceil(log2 N) a + 2 (N-1)/N B / busbw. "
              f"Assumptions: a = {LATENCY_S * 1e6:g} us per tree level (ours, no source); busbw "
              f"{BUSBW['in_node'][0] / 1e9:g} GB/s within one 8-GPU node ({BUSBW['in_node'][1]}) and "
              f"{BUSBW['across_nodes'][0] / 1e9:g} GB/s across nodes ({BUSBW['across_nodes'][1]}); t, the compute "
              "time of one step on one GPU, is not measured here, so two values are shown.", "",
              "| workload | N GPUs | c(N) | S(N) if t = 1 ms | S(N) if t = 10 ms |", "| --- | --- | --- | --- | --- |"]
    for workload, c in result["communication"].items():
        for gpus in GPUS:
            lines.append(f"| {workload} | {gpus} | {1e6 * comm_seconds(gpus, c['bytes']):.0f} us | " +
                         " | ".join(f"{speedup(gpus, c['bytes'], t):.0f}x" for t in STEP_SECONDS) + " |")
    lines += ["", "## GPU path", "",
              ("A CUDA device was visible: see the run's output." if result["cuda_available"] else
               "No GPU on this machine (torch.cuda.is_available() is False): the NCCL path (backend NCCL for CUDA "
               "devices, process i of a machine on cuda:i) is unit-tested for its selection logic only "
               "(tests/test_distributed.py); it has not run on a GPU."), "",
              "## Provenance", "", f"- command: `{p['command']}`" + (" (quick: tiny runs)" if result["quick"] else ""),
              f"- commit: {p['commit']}", f"- date: {p['date']}", f"- machine: {p['machine']}",
              f"- load average before: {result['load_before']}; after: {result['load_after']}", ""]
    return "\n".join(lines)
