"""kubeconfig.py against real files, and against the real kubectl where it is installed."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from trayapp.engine.kube.kubeconfig import (
    entry_path,
    kubeconfig_paths,
    merged_kubeconfig,
    read_context_entries,
    read_effective_context,
    set_current_context,
)
from trayapp.errors import KubeconfigError

KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not on PATH; these tests compare with it"
)

FIRST = """
    apiVersion: v1
    kind: Config
    clusters:
    - name: shared
      cluster: {server: "https://first.example:6443"}
    - name: only-first
      cluster: {server: "https://only-first.example:6443"}
    users:
    - name: me
      user: {token: first-secret-token}
    contexts:
    - name: alpha
      context: {cluster: shared, user: me, namespace: team-a}
    - name: spare
      context: {cluster: only-first, user: me}
"""

SECOND = """
    apiVersion: v1
    kind: Config
    current-context: beta
    clusters:
    - name: shared
      cluster: {server: "https://second.example:6443"}
    users:
    - name: me
      user: {token: second-secret-token}
    contexts:
    - name: alpha
      context: {cluster: shared, user: me, namespace: ignored}
    - name: beta
      context: {cluster: shared, user: me}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def two(tmp_path: Path) -> tuple[Path, Path]:
    return write(tmp_path / "a" / "first.yaml", FIRST), write(
        tmp_path / "b" / "second.yaml", SECOND
    )


def kubectl(paths: tuple[Path, ...], *args: str) -> str:
    assert KUBECTL is not None
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(paths[0].parent),
        "KUBECONFIG": os.pathsep.join(map(str, paths)),
    }
    done = subprocess.run(
        [KUBECTL, *args], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


# --- paths ---------------------------------------------------------------------------------------


def test_paths_follow_kubectl_precedence(tmp_path: Path) -> None:
    sep = os.pathsep
    assert kubeconfig_paths("/x/explicit", {"KUBECONFIG": "/a"}) == (Path("/x/explicit"),)
    env = {"KUBECONFIG": f"/a{sep}{sep}/b{sep}/a{sep}", "HOME": "/home/me"}
    assert kubeconfig_paths(None, env) == (Path("/a"), Path("/b"))
    assert kubeconfig_paths(None, {"HOME": str(tmp_path)}) == (tmp_path / ".kube" / "config",)
    assert kubeconfig_paths(None, {"KUBECONFIG": "", "HOME": str(tmp_path)}) == (
        tmp_path / ".kube" / "config",
    )


# --- merging -------------------------------------------------------------------------------------


def test_first_file_wins_for_entries_and_current_context_comes_from_the_first_that_sets_it(
    two,
) -> None:
    first, second = two
    merged = merged_kubeconfig([first, second])
    assert merged.files == (first, second)
    assert merged.clusters["shared"].body["server"] == "https://first.example:6443"
    assert merged.clusters["shared"].source == first
    assert merged.users["me"].source == first
    assert merged.contexts["alpha"].body["namespace"] == "team-a"
    assert merged.contexts["beta"].source == second
    assert (merged.current_context, merged.current_context_source) == ("beta", second)

    effective = read_effective_context([first, second])
    assert (effective.name, effective.cluster, effective.user) == ("beta", "shared", "me")
    assert (
        effective.server == "https://first.example:6443"
    )  # beta lives in second, its cluster in first
    assert (effective.namespace, effective.source) == ("default", second)

    pinned = read_effective_context([first, second], pinned_context="alpha")
    assert (pinned.name, pinned.namespace, pinned.source) == ("alpha", "team-a", first)


def test_missing_files_are_skipped_and_an_empty_file_is_an_empty_config(
    tmp_path: Path, two
) -> None:
    _, second = two
    empty = write(tmp_path / "empty.yaml", "")
    merged = merged_kubeconfig([tmp_path / "missing.yaml", empty, second])
    assert merged.files == (empty, second)
    assert read_effective_context([tmp_path / "missing.yaml", empty, second]).name == "beta"


def test_an_empty_current_context_does_not_count_as_set(tmp_path: Path, two) -> None:
    first, second = two
    first.write_text(first.read_text() + 'current-context: ""\n')
    assert read_effective_context([first, second]).name == "beta"


def test_repr_shows_no_token(two) -> None:
    merged = merged_kubeconfig(list(two))
    effective = read_effective_context(list(two))
    for text in (repr(merged), repr(effective), repr(merged.users["me"])):
        assert "secret-token" not in text


# --- errors --------------------------------------------------------------------------------------


def error_for(paths: list[Path], pinned: str | None = None) -> str:
    with pytest.raises(KubeconfigError) as info:
        read_effective_context(paths, pinned)
    message = str(info.value)
    assert "secret-token" not in message
    assert message.endswith(".")
    return message


def test_all_files_missing(tmp_path: Path) -> None:
    one = tmp_path / "nope.yaml"
    assert (
        error_for([one])
        == f"The kubeconfig {one} does not exist. kubetray needs one to reach a cluster."
    )
    message = error_for([one, tmp_path / "other.yaml"])
    assert str(one) in message and str(tmp_path / "other.yaml") in message


def test_yaml_garbage_names_file_and_line_but_not_the_text(tmp_path: Path) -> None:
    bad = write(
        tmp_path / "config", "users:\n- name: me\n  user: {token: secret-token\n  oops: [\n"
    )
    message = error_for([bad])
    assert message.startswith(f"The kubeconfig {bad} is not valid YAML (line ")


def test_not_a_mapping(tmp_path: Path) -> None:
    bad = write(tmp_path / "config", "- just\n- a list\n")
    assert (
        error_for([bad])
        == f"The kubeconfig {bad} holds a list where a mapping of settings belongs."
    )


@pytest.mark.skipif(
    os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root reads any file"
)
def test_unreadable(two) -> None:
    first, _ = two
    first.chmod(0)
    try:
        assert error_for([first]) == f"kubetray is not allowed to read the kubeconfig {first}."
    finally:
        first.chmod(0o600)


def test_a_directory_instead_of_a_file(tmp_path: Path) -> None:
    assert error_for([tmp_path]) == f"The kubeconfig {tmp_path} is a directory, not a file."


def test_no_current_context(two) -> None:
    first, _ = two
    message = error_for([first])
    assert message.startswith(f"The kubeconfig {first} sets no current-context")


def test_unknown_context_lists_the_known_ones(two) -> None:
    first, second = two
    message = error_for([first, second], pinned="gamma")
    assert message == (
        f"The kubeconfig {first}{os.pathsep}{second} has no context named 'gamma' (it has: alpha, beta, spare)."
    )


def test_missing_cluster_and_user_entries(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config",
        """
        current-context: c
        contexts:
        - {name: c, context: {cluster: gone, user: me}}
        - {name: d, context: {cluster: here, user: ghost}}
        clusters:
        - {name: here, cluster: {server: "https://here"}}
        users:
        - {name: me, user: {token: secret-token}}
        """,
    )
    assert error_for([config]) == (
        f"The context 'c' in the kubeconfig {config} uses the cluster 'gone', which the kubeconfig {config} does not define."
    )
    assert error_for([config], "d") == (
        f"The context 'd' in the kubeconfig {config} uses the user 'ghost', which the kubeconfig {config} does not define."
    )


def test_duplicate_names_in_one_file_are_refused_as_kubectl_does(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config", "contexts:\n- {name: x, context: {}}\n- {name: x, context: {}}\n"
    )
    assert error_for([config]) == f"The kubeconfig {config} defines 'x' twice in 'contexts'."


# --- fingerprint ---------------------------------------------------------------------------------


def fingerprint(path: Path) -> str:
    return read_effective_context([path]).fingerprint


def test_fingerprint_follows_what_affects_connecting(tmp_path: Path) -> None:
    base = textwrap.dedent(
        """
        current-context: work
        clusters:
        - {name: k, cluster: {server: "https://k.example"}}
        users:
        - {name: me, user: {token: secret-token-1}}
        contexts:
        - {name: work, context: {cluster: k, user: me, namespace: ns1}}
        - {name: other, context: {cluster: k, user: me}}
        """
    )
    path = write(tmp_path / "config", base)
    original = fingerprint(path)
    assert len(original) == 64 and "secret" not in original

    def variant(old: str, new: str) -> str:
        path.write_text(base.replace(old, new))
        return fingerprint(path)

    assert variant("ns1}", "ns2}") != original
    assert variant("https://k.example", "https://k2.example") != original
    assert variant("secret-token-1", "secret-token-2") != original
    assert (
        variant(
            "{name: other, context: {cluster: k, user: me}}", "{name: other, context: {cluster: k}}"
        )
        == original
    )
    assert (
        variant("current-context: work", "# a comment\ncurrent-context: work  # trailing")
        == original
    )
    assert variant("", "") == original


# --- writing -------------------------------------------------------------------------------------


def test_set_current_context_keeps_other_text_and_mode(two) -> None:
    first, second = two
    first.write_text("# my notes\n" + first.read_text() + "current-context: spare  # was here\n")
    first.chmod(0o640)
    assert set_current_context([first, second], "alpha") == first
    text = first.read_text()
    assert text.startswith("# my notes\n")
    assert "current-context: alpha  # was here\n" in text
    assert stat.S_IMODE(first.stat().st_mode) == 0o640
    assert read_effective_context([first, second]).name == "alpha"
    assert [p.name for p in first.parent.iterdir()] == ["first.yaml"]  # no temp file left behind


def test_set_current_context_writes_the_first_existing_file_even_when_a_later_one_set_it(
    tmp_path, two
) -> None:
    first, second = two
    before = second.read_text()
    assert set_current_context([tmp_path / "missing", first, second], "spare") == first
    assert second.read_text() == before
    assert not (tmp_path / "missing").exists()
    assert read_effective_context([tmp_path / "missing", first, second]).name == "spare"


def test_set_current_context_to_the_current_one_writes_nothing(two) -> None:
    first, second = two
    before = first.read_text()
    assert set_current_context([first, second], "beta") == second
    assert first.read_text() == before


def test_set_current_context_refuses_an_unknown_context(two) -> None:
    with pytest.raises(KubeconfigError, match="has no context named 'nope'"):
        set_current_context(list(two), "nope")


def test_set_current_context_writes_through_a_symlink(tmp_path: Path, two) -> None:
    first, _ = two
    link = tmp_path / "link.yaml"
    link.symlink_to(first)
    set_current_context([link], "alpha")
    assert link.is_symlink()
    assert read_effective_context([first]).name == "alpha"


def test_set_current_context_quotes_odd_names(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config",
        """
        clusters: [{name: k, cluster: {server: "https://k"}}]
        users: [{name: u, user: {}}]
        contexts: [{name: "yes", context: {cluster: k, user: u}}, {name: "a: b #c", context: {cluster: k, user: u}}]
        """,
    )
    for name in ("yes", "a: b #c"):
        set_current_context([config], name)
        assert read_effective_context([config]).name == name


# --- against the real kubectl --------------------------------------------------------------------


@needs_kubectl
def test_kubectl_agrees_after_set_current_context(two) -> None:
    first, second = two
    paths = (first, second)
    for name, namespace in (("alpha", "team-a"), ("spare", None), ("beta", None)):
        set_current_context(paths, name)
        view = json.loads(kubectl(paths, "config", "view", "--minify", "-o", "json"))
        assert view["current-context"] == name
        assert view["contexts"][0]["context"].get("namespace") == namespace
        effective = read_effective_context(paths)
        assert effective.server == view["clusters"][0]["cluster"]["server"]
        assert kubectl(paths, "config", "current-context").strip() == name


@needs_kubectl
def test_we_see_what_kubectl_use_context_and_set_context_wrote(tmp_path: Path, two) -> None:
    first, second = two
    paths = (tmp_path / "missing.yaml", first, second)
    kubectl(paths, "config", "use-context", "alpha")
    assert (
        "current-context: alpha" in first.read_text()
    )  # the first existing file, as set_current_context does
    assert "current-context: beta" in second.read_text()
    assert read_effective_context(paths).name == "alpha"
    kubectl(paths, "config", "set-context", "--current", "--namespace", "elsewhere")
    effective = read_effective_context(paths)
    assert (effective.name, effective.namespace) == ("alpha", "elsewhere")
    kubectl(paths, "config", "use-context", "beta")
    assert read_effective_context(paths).name == "beta"


# --- the entries a connection needs ----------------------------------------------------------------

def test_context_entries_come_from_the_files_that_won(two: tuple[Path, Path]) -> None:
    first, second = two
    entries = read_context_entries([second, first])  # second's current-context: beta
    assert entries.effective == read_effective_context([second, first])
    assert entries.cluster.name == "shared" and entries.cluster.source == second
    assert entries.user is not None and entries.user.source == second
    assert entries.user.body["token"] == "second-secret-token"
    assert "second-secret-token" not in repr(entries)  # bodies stay out of reprs


def test_a_context_without_a_user_has_no_user_entry(tmp_path: Path) -> None:
    path = write(tmp_path / "kc", """
        clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
        contexts: [{name: ctx, context: {cluster: c}}]
        current-context: ctx
    """)
    assert read_context_entries([path]).user is None


def test_files_named_in_an_entry_count_from_that_entrys_file(two: tuple[Path, Path], tmp_path: Path) -> None:
    first, second = two
    entries = read_context_entries([first, second], "alpha")
    assert entry_path(entries.cluster, "certs/ca.crt") == first.parent / "certs" / "ca.crt"
    assert entry_path(entries.cluster, str(tmp_path / "abs.crt")) == tmp_path / "abs.crt"
    assert entry_path(entries.cluster, "~/ca.crt") == Path.home() / "ca.crt"
