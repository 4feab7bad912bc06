"""Read the user's kubeconfig files the way kubectl does and work out the context in effect.

Pure reading (standard library and PyYAML) plus one writer, `set_current_context`, which changes
`current-context` in the same file `kubectl config use-context` would. Connecting (TLS, exec
plugins, token refresh) is auth.py's job; this module only answers "which context, and did
anything that matters for connecting change?".

Merging follows client-go's loader: for clusters, users and contexts the first file that defines
a name wins, whole entry; `current-context` comes from the first file that sets a non-empty one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trayapp.errors import KubeconfigError

_SECTIONS = ("clusters", "users", "contexts")
_SECTION_BODY = {"clusters": "cluster", "users": "user", "contexts": "context"}
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@/-]*")


@dataclass(frozen=True)
class NamedEntry:
    """One cluster, user or context entry and the file it came from."""

    name: str
    body: Mapping[str, Any] = field(repr=False)  # user bodies hold secrets: keep them out of repr
    source: Path


@dataclass(frozen=True)
class MergedKubeconfig:
    """The kubeconfig files merged as kubectl merges them."""

    paths: tuple[Path, ...]  # every file asked for, in precedence order
    files: tuple[Path, ...]  # the ones that existed and were read
    current_context: str | None
    current_context_source: Path | None
    clusters: Mapping[str, NamedEntry] = field(repr=False)
    users: Mapping[str, NamedEntry] = field(repr=False)
    contexts: Mapping[str, NamedEntry] = field(repr=False)


@dataclass(frozen=True)
class EffectiveContext:
    """The context kubetray should use and a fingerprint of everything that affects connecting."""

    name: str
    cluster: str
    server: str
    user: str
    namespace: str  # "default" when the context sets none
    source: Path  # the file the context entry came from
    fingerprint: str  # sha256 hex; secrets enter it only as hashes


def kubeconfig_paths(
    explicit: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] = os.environ,
) -> tuple[Path, ...]:
    """The kubeconfig files kubectl would read: --kubeconfig, else $KUBECONFIG, else ~/.kube/config."""
    if explicit:
        return (Path(explicit).expanduser(),)
    paths: list[Path] = []
    for entry in environ.get("KUBECONFIG", "").split(os.pathsep):
        if (
            entry and Path(entry).expanduser() not in paths
        ):  # client-go drops repeats, keeping the first
            paths.append(Path(entry).expanduser())
    if paths:
        return tuple(paths)
    home = environ.get("HOME") if sys.platform != "win32" else None
    return ((Path(home) if home else Path.home()) / ".kube" / "config",)


def merged_kubeconfig(paths: Sequence[Path]) -> MergedKubeconfig:
    """Read and merge `paths`; missing files are skipped, but at least one must exist."""
    paths = tuple(Path(p) for p in paths)
    sections: dict[str, dict[str, NamedEntry]] = {name: {} for name in _SECTIONS}
    files: list[Path] = []
    current: str | None = None
    current_source: Path | None = None
    for path in paths:
        document = _load(path)
        if document is None:
            continue
        files.append(path)
        for section in _SECTIONS:
            for entry in _entries(path, document, section):
                sections[section].setdefault(entry.name, entry)  # the first file wins
        value = document.get("current-context")
        if current is None and value:
            current, current_source = str(value), path
    if not files:
        raise KubeconfigError(f"{_describe_missing(paths)} kubetray needs one to reach a cluster.")
    return MergedKubeconfig(
        paths=paths,
        files=tuple(files),
        current_context=current,
        current_context_source=current_source,
        clusters=sections["clusters"],
        users=sections["users"],
        contexts=sections["contexts"],
    )


@dataclass(frozen=True)
class ContextEntries:
    """The context in effect with the cluster and user entries it names, each with its file."""

    effective: EffectiveContext
    cluster: NamedEntry
    user: NamedEntry | None  # None when the context names no user


def read_effective_context(
    paths: Sequence[Path], pinned_context: str | None = None
) -> EffectiveContext:
    """The context in effect: `pinned_context` if given, else the kubeconfig's current-context."""
    return read_context_entries(paths, pinned_context).effective


def read_context_entries(paths: Sequence[Path], pinned_context: str | None = None) -> ContextEntries:
    """Like read_effective_context, with the cluster and user entries for connecting."""
    merged = merged_kubeconfig(paths)
    shown = _show(merged.files)
    name = pinned_context or merged.current_context
    if not name:
        raise KubeconfigError(
            f"The kubeconfig {shown} sets no current-context, so there is no context to use; "
            "`kubectl config use-context NAME` picks one."
        )
    context = _context(merged, name)
    body = context.body
    cluster_name = str(body.get("cluster") or "")
    user_name = str(body.get("user") or "")
    if not cluster_name:
        raise KubeconfigError(
            f"The context {name!r} in the kubeconfig {context.source} names no cluster."
        )
    cluster = merged.clusters.get(cluster_name)
    if cluster is None:
        raise KubeconfigError(
            f"The context {name!r} in the kubeconfig {context.source} uses the cluster {cluster_name!r}, "
            f"which the kubeconfig {shown} does not define."
        )
    user = merged.users.get(user_name) if user_name else None
    if user_name and user is None:
        raise KubeconfigError(
            f"The context {name!r} in the kubeconfig {context.source} uses the user {user_name!r}, "
            f"which the kubeconfig {shown} does not define."
        )
    server = str(cluster.body.get("server") or "")
    if not server:
        raise KubeconfigError(
            f"The cluster {cluster_name!r} in the kubeconfig {cluster.source} has no server."
        )
    namespace = str(body.get("namespace") or "") or "default"
    effective = EffectiveContext(
        name=name,
        cluster=cluster_name,
        server=server,
        user=user_name,
        namespace=namespace,
        source=context.source,
        fingerprint=_fingerprint(name, cluster, user, namespace),
    )
    return ContextEntries(effective, cluster, user)


def entry_path(entry: NamedEntry, value: str) -> Path:
    """A file named in an entry: relative paths count from the folder of the entry's own file,
    as client-go resolves them."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else entry.source.parent / path


def set_current_context(paths: Sequence[Path], name: str) -> Path:
    """Make `name` the current context, writing where `kubectl config use-context` writes.

    kubectl (client-go `writeCurrentContext` with `PathOptions.GetDefaultFilename`) writes nothing
    when the merged current-context already is `name`; otherwise it writes the single file when
    there is one, else the first of the files that exists, whichever file set current-context
    before. Setting it in the first existing file makes it win the merge. Returns the file that
    now holds the current-context.
    """
    merged = merged_kubeconfig(paths)
    _context(merged, name)  # kubectl refuses unknown contexts too
    if merged.current_context == name and merged.current_context_source is not None:
        return merged.current_context_source
    target = merged.paths[0] if len(merged.paths) == 1 else merged.files[0]
    _write_current_context(target, name)
    return target


def _load(path: Path) -> dict[str, Any] | None:
    """One file's top-level mapping, {} for an empty file, None when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise KubeconfigError(f"The kubeconfig {path} is a directory, not a file.") from None
    except PermissionError:
        raise KubeconfigError(f"kubetray is not allowed to read the kubeconfig {path}.") from None
    except UnicodeDecodeError:
        raise KubeconfigError(f"The kubeconfig {path} is not UTF-8 text.") from None
    except OSError as exc:
        raise KubeconfigError(
            f"kubetray could not read the kubeconfig {path} ({exc.strerror})."
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Only the position and the parser's problem: str(exc) quotes the line, which may hold a token.
        raise KubeconfigError(
            f"The kubeconfig {path} is not valid YAML ({_yaml_problem(exc)})."
        ) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise KubeconfigError(
            f"The kubeconfig {path} holds a {type(document).__name__} where a mapping of settings belongs."
        )
    return document


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "unreadable YAML"
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _entries(path: Path, document: Mapping[str, Any], section: str) -> list[NamedEntry]:
    items = document.get(section)
    if items is None:
        return []
    if not isinstance(items, list):
        raise KubeconfigError(f"The kubeconfig {path} has a {section!r} that is not a list.")
    entries: list[NamedEntry] = []
    seen: set[str] = set()
    for index, item in enumerate(items, start=1):
        name = item.get("name") if isinstance(item, dict) else None
        if not name:
            raise KubeconfigError(
                f"The kubeconfig {path} has an entry without a name in {section!r} (entry {index})."
            )
        name = str(name)
        if name in seen:
            # kubectl refuses such a file ("duplicate name in list"), so kubetray does as well.
            raise KubeconfigError(f"The kubeconfig {path} defines {name!r} twice in {section!r}.")
        seen.add(name)
        body = item.get(_SECTION_BODY[section]) or {}
        if not isinstance(body, dict):
            raise KubeconfigError(
                f"The kubeconfig {path} has a {section!r} entry {name!r} that is not a mapping."
            )
        entries.append(NamedEntry(name=name, body=body, source=path))
    return entries


def _context(merged: MergedKubeconfig, name: str) -> NamedEntry:
    context = merged.contexts.get(name)
    if context is None:
        known = ", ".join(sorted(merged.contexts)) or "none"
        raise KubeconfigError(
            f"The kubeconfig {_show(merged.files)} has no context named {name!r} (it has: {known})."
        )
    return context


def _fingerprint(name: str, cluster: NamedEntry, user: NamedEntry | None, namespace: str) -> str:
    """sha256 over what a connection depends on; the user entry enters only as its own hash."""
    user_digest = _digest(user.body) if user is not None else None
    canonical = {
        "context": name,
        "cluster": {"name": cluster.name, "entry": cluster.body},
        "user": {"name": user.name if user is not None else "", "sha256": user_digest},
        "namespace": namespace,
    }
    return _digest(canonical)


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _show(paths: Sequence[Path]) -> str:
    return os.pathsep.join(str(p) for p in paths)


def _describe_missing(paths: Sequence[Path]) -> str:
    if len(paths) == 1:
        return f"The kubeconfig {paths[0]} does not exist."
    return f"None of the kubeconfig files {', '.join(str(p) for p in paths)} exists."


def _write_current_context(path: Path, name: str) -> None:
    """Set current-context in one file, keeping its other text, comments and mode."""
    # Write through a symlink (dotfile managers link ~/.kube/config) instead of replacing the link.
    target = Path(os.path.realpath(path))
    try:
        text = target.read_text(encoding="utf-8")
        mode: int | None = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        text, mode = "", None
    except OSError as exc:
        raise KubeconfigError(
            f"kubetray could not read the kubeconfig {path} ({exc.strerror})."
        ) from None
    new_text = _with_current_context(text, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".kubetray", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(new_text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode if mode is not None else 0o600)  # kubectl creates kubeconfigs 0600
        os.replace(temp, target)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise KubeconfigError(
            f"kubetray could not write the kubeconfig {path} ({exc.strerror})."
        ) from None


def _with_current_context(text: str, name: str) -> str:
    """The file's text with current-context set: a text splice when safe, else a full re-dump."""
    scalar = (
        name if _PLAIN_NAME.fullmatch(name) and yaml.safe_load(name) == name else json.dumps(name)
    )
    before = yaml.safe_load(text) if text.strip() else None
    candidate = _splice(text, scalar)
    if candidate is not None:
        after = yaml.safe_load(candidate)
        expected = dict(before or {})
        expected["current-context"] = name
        if after == expected:  # the splice must change exactly one value, or we fall back
            return candidate
    document = dict(before or {})
    document["current-context"] = name
    return yaml.safe_dump(document, default_flow_style=False, sort_keys=False)


def _splice(text: str, scalar: str) -> str | None:
    if not text.strip():
        return None
    root = yaml.compose(text)
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        return None
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "current-context":
            if not isinstance(value, yaml.ScalarNode):
                return None
            start, end = value.start_mark.index, value.end_mark.index
            if start == end:  # `current-context:` with no value: put one after the colon
                return text[:start] + " " + scalar + text[end:]
            return text[:start] + scalar + text[end:]
    separator = "" if text.endswith("\n") else "\n"
    return f"{text}{separator}current-context: {scalar}\n"
