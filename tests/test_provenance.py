"""Provenance: the commit a result came from, and what a bitwise rerun must match."""

import os
import subprocess
import sys

from pntm import provenance


def test_source_commit_variable_names_the_commit_of_a_copied_tree(monkeypatch):
    monkeypatch.setenv(provenance.SOURCE_COMMIT_VARIABLE, "abc1234")
    assert provenance.git_commit() == "abc1234"
    assert provenance.git_dirty() is None  # the copy's own git state says nothing
    monkeypatch.delenv(provenance.SOURCE_COMMIT_VARIABLE)
    assert provenance.git_commit() != "abc1234"


def test_provenance_records_what_a_bitwise_rerun_must_match():
    """The thread count and ATen's CPU instruction set, which change the order floats add in:
    pinned with ATEN_CPU_CAPABILITY, the record says so."""
    record = provenance.provenance("pntm test")
    assert record["threads"] >= 1 and record["cpu_capability"]
    code = "from pntm import provenance; print(provenance.determinism()['cpu_capability'])"
    pinned = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "ATEN_CPU_CAPABILITY": "default"}, check=True)
    assert pinned.stdout.strip() == "DEFAULT"


def test_provenance_says_whether_the_write_event_kernels_are_used(monkeypatch):
    assert provenance.determinism()["write_event_kernels"] == "on"
    monkeypatch.setenv("PNTM_KERNELS", "0")
    assert provenance.determinism()["write_event_kernels"] == "off"
