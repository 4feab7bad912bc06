"""`kubetray add`, `remove`, `list`, `pin` and `unpin`: the rules file changed from a terminal.

config/edit.py does the editing (the same edits the tray makes); this module turns arguments into
those calls, prints what happened, and for `add` asks the cluster, briefly, whether the resource
exists: a missing one is a warning, since the rule simply waits for it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from trayapp.config.edit import InvalidRule as BadArgument
from trayapp.config.edit import (
    RuleDraft,
    RulesEditError,
    add_rule,
    list_rules,
    parse_resource_type,
    remove_rule,
    set_pinned,
)
from trayapp.errors import KubetrayError, NotFound
from trayapp.model import DEFAULT_NAMESPACE, ResourceType

CHECK_SECONDS = 2.0  # how long `add` waits for the cluster before it skips the check
_GLOB = set("*?[")


def parse_target(text: str) -> tuple[ResourceType, str]:
    """TYPE/NAME with kubectl's type names (svc/db, deploy/api, statefulset/cache)."""
    kind_text, slash, name = text.partition("/")
    if not slash or not kind_text or not name.strip() or "/" in name:
        raise BadArgument(f'"{text}" is not TYPE/NAME, as in svc/db or deploy/api.')
    return parse_resource_type(kind_text), name.strip()


def parse_port(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text.strip()


async def _ask(kind: ResourceType, name: str, namespace: str, context: str | None,
               kubeconfig: Sequence[Path] | None) -> str | None:
    from trayapp.engine.aio import deadline
    from trayapp.engine.kube import Credentials, KubeApi, kubeconfig_paths

    credentials = Credentials(tuple(kubeconfig) if kubeconfig else kubeconfig_paths(), context)
    target = f"{kind.value} {namespace}/{name}"
    try:
        access = credentials.load()
    except KubetrayError as error:
        return f"kubetray did not check that {target} exists: {error.message}"
    where = f"context {access.context}"
    try:
        async with deadline(CHECK_SECONDS):
            await KubeApi(access, credentials, read_timeout=CHECK_SECONDS).get(kind.value + "s", namespace, name)
    except NotFound:
        return (f"Warning: {where} has no {target} (yet); the rule is saved and its tunnel waits until "
                "it exists.")
    except TimeoutError:
        return (f"kubetray did not check that {target} exists: {where}'s cluster did not answer within "
                f"{CHECK_SECONDS:g} seconds.")
    except KubetrayError as error:
        return f"kubetray did not check that {target} exists in {where}: {error.message}"
    return None


def cluster_note(kind: ResourceType, name: str, namespace: str, context: str | None,
                 kubeconfig: Sequence[Path] | None) -> str | None:
    """A warning when the cluster says the resource does not exist, a note when it could not be asked.
    `kubeconfig`: the files to read; None for kubectl's ($KUBECONFIG, else ~/.kube/config)."""
    if context is not None and _GLOB & set(context):
        return None  # a pattern names no one cluster to ask
    return asyncio.run(_ask(kind, name, namespace, context, kubeconfig))


def run_add(path: Path, target: str, port: str, *, local_port: int | None, namespace: str | None,
            context: str | None, label: str | None, kubeconfig: Sequence[Path] | None,
            check_cluster: bool = True,
            check_context: str | None = None, pin: bool = False,
            out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    pin_problem = _pin_problem(context) if pin else None
    if pin_problem:
        print(pin_problem + " Nothing was changed.", file=err)
        return 2
    try:
        kind, name = parse_target(target)
        draft = RuleDraft(kind, name, parse_port(port), namespace=namespace, local_port=local_port, name=label)
        result = add_rule(path, draft, context)
    except BadArgument as error:
        print(error.message, file=err)
        return 2
    except RulesEditError as error:
        print(error.message, file=err)
        return 1
    print(result.message + " A running kubetray starts forwarding it by itself.", file=out)
    for warning in result.warnings:
        print(warning, file=err)
    if pin and context is not None and run_pin(path, context, True, out, err) != 0:
        return 1
    # The cluster asked is the rule's context's, else the one `kubetray --context` names, else the current one.
    asked = context or check_context
    note = cluster_note(kind, name, namespace or DEFAULT_NAMESPACE, asked, kubeconfig) if check_cluster else None
    if note:
        print(note, file=err)
    return 0


def run_remove(path: Path, selector: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        result = remove_rule(path, selector)
    except RulesEditError as error:
        print(error.message, file=err)
        return 1
    print(result.message + " A running kubetray stops forwarding it by itself.", file=out)
    return 0


def _pin_problem(context: str | None) -> str | None:
    if context is None:
        return ("--pin pins the context the rule goes under, so it needs --context CTX; top-level rules "
                "always follow the current context.")
    if _GLOB & set(context):
        return (f'Only an exact context name can be pinned, and "{context}" is a pattern: it names no one '
                "context until one is current.")
    return None


def run_pin(path: Path, context: str, pinned: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """`kubetray pin CTX` / `unpin CTX`: `pinned: true` written under `contexts: CTX:`, or removed."""
    problem = _pin_problem(context) if pinned else None
    if problem:
        print(problem + " Nothing was changed.", file=err)
        return 2
    try:
        result = set_pinned(path, context, pinned)
    except RulesEditError as error:
        print(error.message, file=err)
        return 1
    changed = not result.message.endswith("nothing changed.")
    print(result.message + (" A running kubetray applies it by itself." if changed else ""), file=out)
    return 0


def run_list(path: Path, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from trayapp.config.rules import load_rules

    if not path.exists():
        print(f"There is no rules file at {path}, so there are no rules; `kubetray add` creates it.", file=out)
        return 0
    listed = list_rules(path)
    rows = [("WRITTEN AT", "SCOPE", "RULE", "NAMESPACE", "LOCAL")]
    for entry in listed:
        local = entry.rule.requested_local_port
        rows.append((f"{entry.file}:{entry.line}", "all contexts" if entry.context is None else
                     f"context {entry.context}", entry.label, entry.rule.namespace,
                     f"{entry.rule.address}:{local if local is not None else 'auto'}"))
    if listed:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)
    else:
        print(f"{path} has no rules.", file=out)
    ruleset = load_rules(path)
    for exclusion in ruleset.auto.exclude:
        port = f":{exclusion.port}" if exclusion.port is not None else ""
        print(f"Not forwarded automatically: {exclusion.kind.value} {exclusion.namespace}/{exclusion.name}{port} "
              f"({exclusion.origin}).", file=out)
    problems = ruleset.problems
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        print(f"The rules file has {len(problems)} {noun}; kubetray skips the rules with problems until they "
              "are fixed (`kubetray check` shows where).", file=err)
        return 1
    return 0
