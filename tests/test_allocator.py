"""dnnsep.allocator: glibc keeps freed memory for reuse, opt-in through DNNSEP_MALLOC=reuse.

Each case runs in a child process: the settings are process-wide and must not leak into pytest's.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is Linux's")

FAULTS = textwrap.dedent(
    """
    import os, resource, sys
    from dnnsep.allocator import from_environment
    took = from_environment()
    import torch
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        torch.empty(16 << 20).fill_(1.0)  # 64 MB, freed at once: above glibc's largest mmap threshold
    print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def child(code: str, malloc: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DNNSEP_MALLOC"}
    if malloc is not None:
        env["DNNSEP_MALLOC"] = malloc
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)


def test_reuse_stops_the_page_faults_of_repeated_large_tensors():
    took_default, faults_default = child(FAULTS, None).stdout.split()
    took_reuse, faults_reuse = child(FAULTS, "reuse").stdout.split()
    pages = (64 << 20) // 4096
    assert (took_default, took_reuse) == ("False", "True")
    assert int(faults_default) > 15 * pages  # (nearly) every one of the 20 tensors maps fresh pages
    assert int(faults_reuse) < 6 * pages  # measured: 3-4 tensors' worth, the rest reuse them


def test_an_unknown_value_is_ignored_with_a_warning():
    out = child("from dnnsep.allocator import from_environment; print(from_environment())", "fast")
    assert out.stdout.strip() == "False"
    assert "DNNSEP_MALLOC='fast' ignored" in out.stderr


def test_the_command_line_tools_take_the_setting(tmp_path):
    code = textwrap.dedent(
        """
        import dnnsep.allocator, dnnsep.cli
        calls = []
        dnnsep.allocator.keep_freed_memory = lambda: calls.append(1) or True
        try:
            dnnsep.cli.run(lambda argv: 0)
        except SystemExit as exit:
            print(len(calls), exit.code)
        """
    )
    assert child(code, "reuse").stdout.split() == ["1", "0"]
    assert child(code, None).stdout.split() == ["0", "0"]
