"""Provenance: the commit a result came from."""

from pntm import provenance


def test_source_commit_variable_names_the_commit_of_a_copied_tree(monkeypatch):
    monkeypatch.setenv(provenance.SOURCE_COMMIT_VARIABLE, "abc1234")
    assert provenance.git_commit() == "abc1234"
    assert provenance.git_dirty() is None  # the copy's own git state says nothing
    monkeypatch.delenv(provenance.SOURCE_COMMIT_VARIABLE)
    assert provenance.git_commit() != "abc1234"
