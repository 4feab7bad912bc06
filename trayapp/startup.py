"""Start-up wiring for both modes: the engine's options, logging, the single-instance lock, and
`kubetray --headless`, the engine in a terminal, one line per event, with no Qt imported. The
tray (ui/app.py) uses the same wiring around its own face.

In the terminal, human-readable lines go to stderr; with `--json`, one JSON object per event goes to stdout and is
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
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from trayapp.config.paths import state_dir
from trayapp.control import Controller, EngineOptions
from trayapp.engine.events import EventBus
from trayapp.engine.kube import kubeconfig_paths
from trayapp.engine.portmemory import PortMemory
from trayapp.errors import KubetrayError
from trayapp.model import Event, EventKind, Transport
from trayapp.platform.instance import AlreadyRunning, InstanceServer, ask
from trayapp.platform.limits import raise_open_file_limit
from trayapp.platform.secrets import SecretStore


def human_line(event: Event) -> str:
    stamp = time.strftime("%H:%M:%S")
    over = f" (over {event.transport.value})" if event.transport and event.kind in _SAYS_TRANSPORT else ""
    return f"{stamp} {event.kind.value:<11} {event.message}{over}"


# The events after which connections flow: they say what carries them, once kubetray knows.
_SAYS_TRANSPORT = frozenset({EventKind.FORWARDING, EventKind.RECONNECTED})


def printer(json_mode: bool, out: TextIO, err: TextIO) -> Callable[[Event], None]:
    def show(event: Event) -> None:
        if event.kind == EventKind.STATS:
            return  # traffic counters are for the tunnels window, not the terminal
        if json_mode:
            out.write(json.dumps(event.to_json(), separators=(",", ":")) + "\n")
            out.flush()
        else:
            err.write(human_line(event) + "\n")
            err.flush()

    return show


def engine_options(args: argparse.Namespace, rules: Path | None, kubeconfig: str | None) -> EngineOptions:
    """What the engine needs from the command line, for the tray and the terminal alike."""
    # The keyring is asked only for contexts listed in the state folder's record of stored tokens.
    store = SecretStore(state_dir())
    return EngineOptions(
        kubeconfig_paths=tuple(kubeconfig_paths(kubeconfig)),
        rules_path=rules,
        pinned_context=args.context,
        connect_timeout=args.connect_timeout,
        transport=Transport(getattr(args, "transport", "auto")),
        port_memory=PortMemory(state_dir() / "ports.json"),
        stored_token=store.get_token,
        store_token=store.set_token,
    )


async def serve_with_instance(controller: Controller, stop: asyncio.Event) -> int:
    """Run the controller and answer `kubetray status`; 1 when another kubetray already runs."""
    server = InstanceServer(controller.answer)
    try:
        await server.start()
    except AlreadyRunning:
        sys.stderr.write(await asyncio.to_thread(already_running_text))
        return 1
    except KubetrayError as exc:  # InstanceUnavailable: the sentence says kubetray goes on without the lock
        logging.getLogger(__name__).warning("%s", exc.message)
        server = None
    try:
        await controller.serve(stop)
    finally:
        if server is not None:
            await server.close()
    return 0


def already_running_text() -> str:
    from trayapp.status import status_text

    answer = ask({"request": "status"})
    if answer is None:
        return "Another kubetray is starting for this user; this one exits.\n"
    return (f"kubetray is already running (process {answer.get('pid')}, {answer.get('mode')}); this one exits. "
            "Its tunnels:\n" + status_text(answer))


async def _main(args: argparse.Namespace, rules: Path | None, kubeconfig: str | None, bus: EventBus) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    controller = Controller(engine_options(args, rules, kubeconfig), bus)
    return await serve_with_instance(controller, stop)


def setup_logging(verbose: bool) -> None:
    """Warnings (or everything, with -v) on stderr, for the tray and the terminal alike."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_headless(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    raise_open_file_limit()
    bus = EventBus()
    bus.subscribe(printer(args.json, sys.stdout, sys.stderr))
    if ask({"request": "ping"}, 2.0) is not None:
        sys.stderr.write(already_running_text())
        return 1
    if args.demo:
        from trayapp.demo import demo_environment

        with demo_environment() as demo:
            if not args.json:
                sys.stderr.write(
                    "kubetray demo: a simulated cluster is running on this machine (kubeconfig: "
                    f"{demo.kubeconfig}). Try `curl http://127.0.0.1:8080/` once web is forwarding; "
                    "Ctrl-C stops.\n"
                )
            return asyncio.run(_main(args, args.config or demo.rules, str(demo.kubeconfig), bus))
    return asyncio.run(_main(args, args.config, args.kubeconfig, bus))
