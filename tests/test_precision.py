"""precision: auto: bf16 only where the device computes it natively; a run records what it resolved to."""
from __future__ import annotations

import pytest

from fewzero import precision
from fewzero.config import load_config
from fewzero.errors import FewzeroError
from fewzero.run_setup import plan_run


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu sse2 avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert precision.cpu_flags(cpuinfo) == {"fpu", "sse2", "avx2", "avx512_bf16"}
    assert precision.cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize("flags,expected", [({"avx2"}, "fp32"), ({"avx2", "avx512_bf16"}, "bf16"),
                                            ({"amx_bf16"}, "bf16"), (set(), "fp32")])
def test_auto_follows_the_cpu(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    assert precision.resolve_precision("auto", "cpu") == expected
    assert precision.resolve_precision("fp32", "cpu") == "fp32" and precision.resolve_precision("bf16", "cpu") == "bf16"


def test_a_new_run_records_the_resolved_precision(monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    config, resume, _ = plan_run(load_config("protonet", "omniglot", overrides={"precision": "auto"}), tmp_path / "run",
                                 resume=False, overwrite=False, changes={})
    assert config.precision == "bf16" and not resume


def test_unknown_precision_is_one_clear_error():
    with pytest.raises(FewzeroError, match="must be one of fp32, bf16, auto"):
        load_config("protonet", "omniglot", overrides={"precision": "fp16"})
