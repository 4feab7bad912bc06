"""`kubetray --headless`: the engine in a terminal, one line per event, no Qt imported.

Human-readable lines go to stderr; with `--json`, one JSON object per event goes to stdout and is
flushed at once, so another program can follow along. SIGINT and SIGTERM stop cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from trayapp.config.paths import state_dir
from trayapp.config.rules import RuleSet, load_rules
from trayapp.engine.events import EventBus
from trayapp.engine.kubeconfig import EffectiveContext, kubeconfig_paths
from trayapp.engine.portmemory import PortMemory
from trayapp.engine.runtime import RunPlan
from trayapp.engine.supervisor import Supervisor
from trayapp.model import Event, EventKind
from trayapp.platform.limits import raise_open_file_limit
from trayapp.platform.secrets import SecretStore


def human_line(event: Event) -> str:
    stamp = time.strftime("%H:%M:%S")
    return f"{stamp} {event.kind.value:<11} {event.message}"


def printer(json_mode: bool, out: TextIO, err: TextIO) -> Callable[[Event], None]:
    def show(event: Event) -> None:
        if json_mode:
            out.write(json.dumps(event.to_json(), separators=(",", ":")) + "\n")
            out.flush()
        else:
            err.write(human_line(event) + "\n")
            err.flush()

    return show


def _problems_as_events(ruleset: RuleSet) -> Iterator[Event]:
    for problem in ruleset.problems:
        yield Event(EventKind.FAILED, f"{problem} kubetray skipped that rule; the others work.")


async def run_engine(
    ruleset: RuleSet,
    kubeconfig: str | None,
    context: str | None,
    bus: EventBus,
    stop: asyncio.Event,
    connect_timeout: float = 10.0,
) -> int:
    """Follow the kubeconfig and forward until `stop` is set."""
    for event in _problems_as_events(ruleset):
        bus.publish(event)

    auto = ruleset.auto if ruleset.auto.enabled else None

    def plan_for(effective: EffectiveContext) -> RunPlan:
        rules = ruleset.rules_for(effective.name)
        if not rules and auto is None:
            where = ruleset.path or "the rules file"
            bus.publish(Event(EventKind.WAITING, f"No rules apply to context {effective.name!r} in {where} "
                              "and automatic forwarding is off; kubetray has nothing to forward there.",
                              context=effective.name))
        return RunPlan(rules, auto)

    memory = PortMemory(state_dir() / "ports.json")
    supervisor = Supervisor(kubeconfig_paths(kubeconfig), bus, plan_for, context, connect_timeout, memory,
                            stored_token=SecretStore().get_token)
    await supervisor.serve(stop)
    return 0


@contextlib.contextmanager
def _demo_environment() -> Iterator[tuple[Path, Path]]:
    """Start the simulated cluster in its own thread; yield (rules file, kubeconfig)."""
    import tempfile

    # Only --demo reaches the simulator; the engine below does not know it is one.
    from trayapp.sim import SimCluster
    from trayapp.sim.demo import DEMO_RULES, demo_scenario_path
    from trayapp.sim.runner import run_in_thread

    with tempfile.TemporaryDirectory(prefix="kubetray-demo-") as folder:
        rules = Path(folder) / "rules.yaml"
        rules.write_text(DEMO_RULES, encoding="utf-8")
        kubeconfig = Path(folder) / "kubeconfig"
        with run_in_thread(SimCluster("demo", scenario=demo_scenario_path())) as sim:
            sim.cluster.write_kubeconfig(kubeconfig, context="kubetray-demo")
            yield rules, kubeconfig


async def _main(args: argparse.Namespace, ruleset: RuleSet, kubeconfig: str | None, bus: EventBus) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    return await run_engine(ruleset, kubeconfig, args.context, bus, stop, args.connect_timeout)


def run_headless(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    raise_open_file_limit()
    bus = EventBus()
    bus.subscribe(printer(args.json, sys.stdout, sys.stderr))
    if args.demo:
        with _demo_environment() as (rules_path, kubeconfig_path):
            if not args.json:
                sys.stderr.write(
                    "kubetray demo: a simulated cluster is running on this machine (kubeconfig: "
                    f"{kubeconfig_path}). Try `curl http://127.0.0.1:8080/` once web is forwarding; "
                    "Ctrl-C stops.\n"
                )
            ruleset = load_rules(args.config or rules_path)
            return asyncio.run(_main(args, ruleset, str(kubeconfig_path), bus))
    ruleset = load_rules(args.config)
    return asyncio.run(_main(args, ruleset, args.kubeconfig, bus))
