"""fewzero.distributed and the launch flags, in one process: backend and device choice, the torchrun command line,
episode shards, the retired ``workers`` key, and the checks a run makes before it starts."""
import pytest
import torch

from fewzero import distributed, worker_exit
from fewzero.checkpoint import save_checkpoint, saved_config
from fewzero.cli.launch import torchrun_args, worker_argv
from fewzero.cli.parser import build_parser
from fewzero.config import load_config
from fewzero.errors import FewzeroError
from fewzero.sampling import EpisodeSampler
from fewzero.train import train

from bad_input_helpers import fails


@pytest.mark.parametrize("device, requested, cuda, expected", [
    ("cpu", "auto", False, "gloo"),
    ("cpu", "auto", True, "gloo"),
    ("cuda", "auto", True, "nccl"),
    ("cuda:1", "auto", True, "nccl"),
    ("cuda", "gloo", True, "gloo"),
    ("cpu", "gloo", False, "gloo"),
    ("cuda", "nccl", True, "nccl"),
])
def test_backend_follows_the_device(device, requested, cuda, expected):
    assert distributed.choose_backend(device, requested, cuda_available=cuda) == expected


@pytest.mark.parametrize("device, cuda, reason", [
    ("cpu", True, "the run's device is cpu"),
    ("cpu", False, "no CUDA GPU is visible"),
    ("cuda", False, "no CUDA GPU is visible"),
])
def test_nccl_without_cuda_is_refused(device, cuda, reason):
    with pytest.raises(FewzeroError, match=reason):
        distributed.choose_backend(device, "nccl", cuda_available=cuda)


def test_each_process_takes_the_gpu_of_its_local_rank():
    assert distributed.process_device("cuda", local_rank=3, world=4) == "cuda:3"
    assert distributed.process_device("cuda", local_rank=0, world=1) == "cuda"
    assert distributed.process_device("cpu", local_rank=1, world=2) == "cpu"
    assert distributed.process_device("cuda:1", local_rank=0, world=1) == "cuda:1"
    with pytest.raises(FewzeroError, match="names one GPU"):
        distributed.process_device("cuda:1", local_rank=1, world=2)


def test_outside_torchrun_every_collective_is_the_identity(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.environment_ranks() == (0, 0, 1) and distributed.rank_and_world() == (0, 1)
    module = torch.nn.Linear(2, 2)
    module.weight.grad = torch.ones(2, 2)
    assert distributed.sync_step(module, [1.0, 0.0]) == [1.0, 0.0]
    assert torch.equal(module.weight.grad, torch.ones(2, 2))
    assert distributed.any_process(True) and not distributed.any_process(False)
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    with pytest.raises(FewzeroError, match="boom") as caught:
        distributed.agreed(lambda: (_ for _ in ()).throw(FewzeroError("boom")))
    assert type(caught.value) is FewzeroError
    with distributed.process_group("cpu") as device:
        assert device == "cpu" and not torch.distributed.is_initialized()


class _Exited(Exception):
    pass


@pytest.mark.parametrize("code, expected", [(0, 0), (None, 0), (2, 2)])
def test_a_worker_that_joined_a_group_skips_the_teardown(monkeypatch, capsys, code, expected):
    """exit_process: sys.exit outside a group (nothing joined, as in a plain run); os._exit with the same status,
    output flushed first, once this process joined a torchrun group."""
    def fake_exit(status):
        raise _Exited(status)

    monkeypatch.setattr(worker_exit.os, "_exit", fake_exit)
    monkeypatch.setattr(worker_exit, "_joined", False)
    with pytest.raises(SystemExit) as plain:
        worker_exit.exit_process(code)
    assert plain.value.code == expected
    monkeypatch.setattr(worker_exit, "_joined", True)
    flushed = []
    monkeypatch.setattr(worker_exit.sys.stdout, "flush", lambda: flushed.append("out"), raising=False)
    with pytest.raises(_Exited) as fast:
        worker_exit.exit_process(code)
    assert fast.value.args == (expected,) and flushed == ["out"]


def test_the_environment_gives_the_ranks(monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "2")
    assert distributed.environment_ranks() == (5, 1, 8) and distributed.restart_count() == 2


def test_the_processes_share_the_episodes_without_overlap():
    labels = torch.arange(20).repeat_interleave(4)
    whole = list(EpisodeSampler(labels, 5, 1, 1, n_episodes=13, seed=3, start=4))  # episodes 4 .. 12
    shards = [list(EpisodeSampler(labels, 5, 1, 1, n_episodes=13, seed=3, start=4, rank=r, world=3))
              for r in range(3)]
    assert shards == [[whole[i - 4] for i in range(4, 13) if i % 3 == rank] for rank in range(3)]
    with pytest.raises(FewzeroError, match="rank"):
        EpisodeSampler(labels, 5, 1, 1, n_episodes=13, rank=3, world=3)


@pytest.mark.parametrize("meta_batch, episodes, world, ok", [(8, 24, 2, True), (8, 24, 4, True), (8, 24, 3, False),
                                                               (6, 20, 3, False), (1, 100, 1, True)])
def test_every_process_must_do_the_same_share(meta_batch, episodes, world, ok):
    if ok:
        distributed.check_divisible(meta_batch, episodes, world)
    else:
        with pytest.raises(distributed.AgreedError, match=f"multiples of the number of processes \\({world}\\)"):
            distributed.check_divisible(meta_batch, episodes, world)


def test_the_workers_get_the_command_without_the_launch_flags():
    argv = ["train", "--method", "maml", "--nproc", "2", "--set", "lr=0.1", "--max-restarts=1", "--nnodes", "1",
            "--rdzv-timeout", "5", "--verbose", "--out", "x"]
    assert worker_argv(argv) == ["train", "--method", "maml", "--set", "lr=0.1", "--verbose", "--out", "x"]


def test_the_torchrun_command_line():
    parser = build_parser()
    one = torchrun_args(parser.parse_args(["train", "--method", "maml", "--nproc", "3"]),
                        ["train", "--method", "maml", "--nproc", "3"], "/tmp/logs")
    assert "--standalone" in one and one[one.index("--nproc-per-node") + 1] == "3"
    assert one[one.index("--max-restarts") + 1] == "0"
    assert one[one.index("-m"):] == ["-m", "fewzero", "train", "--method", "maml"]
    flags = ["train", "--method", "maml", "--nproc", "2", "--nnodes", "4", "--rdzv-endpoint", "node0:29400",
             "--rdzv-timeout", "30", "--max-restarts", "2"]
    many = torchrun_args(parser.parse_args(flags), flags, "/tmp/logs")
    assert "--standalone" not in many
    for flag, value in (("--nnodes", "4"), ("--rdzv-backend", "c10d"), ("--rdzv-endpoint", "node0:29400"),
                        ("--rdzv-conf", "join_timeout=30"), ("--max-restarts", "2"), ("--nproc-per-node", "2")):
        assert many[many.index(flag) + 1] == value


@pytest.mark.parametrize("flags, fragments", [
    (["--nproc", "3", "--set", "meta_batch=8", "--episodes", "24"], ("multiples of the number of processes (3)",)),
    (["--nproc", "0"], ("--nproc must be >= 1",)),
    (["--nnodes", "2"], ("--nnodes 2 needs --rdzv-endpoint",)),
    (["--nnodes", "2", "--rdzv-endpoint", "node0"], ("must be HOST:PORT",)),
    (["--nproc", "2", "--max-restarts", "-1"], ("--max-restarts must be >= 0",)),
    (["--set", "dist_backend=nccl"], ("dist_backend nccl needs CUDA",)),
    (["--nproc", "2", "--set", "dist_backend=nccl"], ("dist_backend nccl needs CUDA",)),
    (["--set", "dist_backend=mpi"], ("'dist_backend'", "auto, gloo, nccl")),
    (["--set", "workers=2"], ("'workers'", "is gone", "fewzero train --nproc N", "torchrun")),
])
def test_launch_settings_that_cannot_work(capfd, tmp_path, flags, fragments):
    fails(capfd, tmp_path, ["train", "--method", "maml", "--quiet", "--out", tmp_path / "run", *flags], *fragments)


def test_a_checkpoint_from_before_torchrun_still_loads(tmp_path):
    config = load_config("maml", "omniglot").to_dict()
    save_checkpoint(tmp_path / "old.pt", {"config": {**config, "workers": 2}, "model": {}})
    assert "workers" not in saved_config({"config": {**config, "workers": 2}}, tmp_path / "old.pt")


def test_a_restarted_group_continues_its_run_only_with_the_same_config(tmp_path, monkeypatch, tiny_omniglot):
    tiny = {"backbone": "mlp", "backbone_args": {"hidden": 8}, "train_way": 2, "train_query": 2, "test_way": 2,
            "episodes": 4, "val_every": 2, "val_episodes": 2, "max_minutes": None}
    config = load_config("protonet", "omniglot", overrides=tiny)
    train(config, tmp_path / "run", progress=False, data_root=str(tiny_omniglot))
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # as torchrun's agent sets it after a failure
    other = load_config("protonet", "omniglot", overrides={**tiny, "lr": 0.5})
    with pytest.raises(FewzeroError, match="holds a run with another config"):
        train(other, tmp_path / "run", progress=False, data_root=str(tiny_omniglot))
    more = load_config("protonet", "omniglot", overrides={**tiny, "episodes": 6})  # episodes may change
    metrics = train(more, tmp_path / "run", progress=False, data_root=str(tiny_omniglot))
    assert metrics["episodes_done"] == 6
    fresh = train(config, tmp_path / "new", progress=False, data_root=str(tiny_omniglot))  # nothing saved yet
    assert fresh["episodes_done"] == 4


def test_processes_given_different_configs_stop_together(monkeypatch):
    """check_same_config compares every process's config hash (here two processes, faked around all_gather)."""
    monkeypatch.setattr(distributed, "rank_and_world", lambda: (0, 2))
    config = load_config("maml", "omniglot").to_dict()
    theirs = {"hash": distributed.config_hash(config)}
    monkeypatch.setattr(torch.distributed, "all_gather_object",
                        lambda out, mine: out.__setitem__(slice(None), [mine, theirs["hash"]]))
    distributed.check_same_config(config)
    theirs["hash"] = distributed.config_hash({**config, "seed": 1})
    with pytest.raises(distributed.AgreedError, match="different configs .* in process 1"):
        distributed.check_same_config(config)


def test_an_error_in_one_process_is_raised_in_all(monkeypatch):
    """agreed(): the lowest failing rank's message, naming it, in every process (faked around all_gather)."""
    monkeypatch.setattr(distributed, "rank_and_world", lambda: (0, 3))
    monkeypatch.setattr(torch.distributed, "all_gather_object",
                        lambda out, mine: out.__setitem__(slice(None), [mine, None, "no data on node 2"]))
    with pytest.raises(distributed.AgreedError, match="^process 2 of 3: no data on node 2$"):
        distributed.agreed(lambda: 1)


def test_checkpoints_between_validations(tmp_path, monkeypatch, tiny_omniglot):
    import fewzero.train as train_module

    saved, real_save = [], train_module.save_checkpoint
    monkeypatch.setattr(train_module, "save_checkpoint",
                        lambda path, payload: (saved.append((path.name, payload.get("episode"))),
                                               real_save(path, payload)))
    config = load_config("protonet", "omniglot", overrides={
        "backbone": "mlp", "backbone_args": {"hidden": 8}, "train_way": 2, "train_query": 2, "test_way": 2,
        "episodes": 12, "meta_batch": 2, "val_every": 8, "checkpoint_every": 4, "val_episodes": 2,
        "max_minutes": None})
    train(config, tmp_path / "run", progress=False, data_root=str(tiny_omniglot))
    assert [episode for name, episode in saved if name == "last.pt"] == [4, 8, 12]
    with pytest.raises(FewzeroError, match="checkpoint_every .* multiple of meta_batch"):
        load_config("protonet", "omniglot", overrides={"meta_batch": 2, "checkpoint_every": 3})


@pytest.mark.parametrize("flags, fragments", [
    (["--dataset", "xlsa17-CUB"], ("xlsa17-CUB has no feature backbone to train", "--dataset cub50")),
    (["--batch-size", "0"], ("--batch-size must be >= 1",)),
    (["--nproc", "2", "--nnodes", "2"], ("--nnodes 2 needs --rdzv-endpoint",)),
])
def test_feature_settings_that_cannot_work(capfd, tmp_path, flags, fragments):
    fails(capfd, tmp_path, ["features", "--quiet", *flags], *fragments)
