"""The `kubetray` command: argument parsing and the choice between tray, headless, demo, check and autostart."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from trayapp import __version__

# model.Transport's values, spelled out so that `--help` needs no import of the engine's model.
TRANSPORTS = ("auto", "spdy-ws", "spdy", "v4")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubetray",
        description="Keep Kubernetes port forwards alive, from the tray or a terminal.",
    )
    parser.add_argument("--version", action="version", version=f"kubetray {__version__}")
    parser.add_argument("--config", type=Path, metavar="PATH",
                        help="rules file (default: the user config folder's kubetray/config.yaml)")
    parser.add_argument("--kubeconfig", metavar="PATH",
                        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)")
    parser.add_argument("--context", metavar="NAME", help="kube context to use (default: the current one)")
    parser.add_argument("--headless", action="store_true", help="run without the tray; print events")
    parser.add_argument("--json", action="store_true", help="with --headless: one JSON object per event on stdout")
    parser.add_argument("--demo", action="store_true",
                        help="run on the built-in simulated cluster, with rules that match it")
    parser.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="how long a new connection waits for a ready pod (default 10)")
    parser.add_argument("--transport", choices=TRANSPORTS, default="auto",
                        help="what carries connections to the pods: auto (default: spdy-ws, else spdy, else v4, "
                             "as the cluster allows), or one of them only; a rule's own transport: wins")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details on stderr")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check", help="validate the rules file and print the rules it holds",
        description="Validate the rules file and print the rules it holds, or every problem with its file\n"
                    "and line. Exits 1 when a rule has a problem (kubetray skips such rules); warnings,\n"
                    "such as two rules asking for one local port, do not fail it.",
        epilog=_rules_format(), formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("--config", type=Path, metavar="PATH", dest="check_config", help="rules file")
    check.add_argument("--example", action="store_true",
                       help="print a commented example rules file and exit")
    autostart = commands.add_parser("autostart", help="start kubetray at login: on, off or status")
    autostart.add_argument("action", choices=("on", "off", "status"))
    status = commands.add_parser("status", help="print the running kubetray's tunnels")
    status.add_argument("--json", action="store_true", dest="status_json", help="as one JSON object")
    token = commands.add_parser(
        "token", help="store (read from stdin) or delete a context's bearer token in the OS keyring")
    token.add_argument("action", choices=("set", "delete"))
    token.add_argument("token_context", metavar="CONTEXT")
    _add_rule_commands(commands)
    return parser


def _add_rule_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`add`, `remove`, `list`, `pin` and `unpin`: the rules file edited in place, comments and layout kept."""
    add = commands.add_parser(
        "add", help="add a forwarding rule to the rules file",
        description="Add a rule to the rules file (the top-level portForward, or a context's with --context),\n"
                    "keeping the file's comments and layout. A running kubetray starts it by itself.\n"
                    "TYPE is pod, service, deployment, statefulset, daemonset, replicaset,\n"
                    "replicationcontroller, job or cronjob, or kubectl's short name (svc, deploy, sts, ds,\n"
                    "rs, rc, po, cj). PORT is a number or a port name. With --context CTX --pin, CTX is\n"
                    "pinned too: its rules forward whatever the current context is.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add.add_argument("target", metavar="TYPE/NAME")
    add.add_argument("port", metavar="PORT")
    add.add_argument("--local-port", type=int, metavar="N", help="local port (default: PORT when it is a number)")
    add.add_argument("--namespace", "-n", metavar="NS", help="the resource's namespace (default: default)")
    add.add_argument("--context", dest="rule_context", metavar="CTX",
                     help="add it under contexts: CTX: (forwarded only in that context)")
    add.add_argument("--pin", action="store_true",
                     help="with --context: pin CTX too, so it forwards whatever the current context is")
    add.add_argument("--name", dest="label", metavar="LABEL", help="how the tray labels it")
    add.add_argument("--config", type=Path, metavar="PATH", dest="rules_config", help="rules file")
    add.add_argument("--no-check", action="store_true", help="do not ask the cluster whether the resource exists")
    remove = commands.add_parser(
        "remove", help="remove a rule from the rules file",
        description="Remove one rule: by its name, TYPE/NAME, TYPE/NAME:PORT, or @LINE (its line in the file,\n"
                    "as `kubetray list` shows it). When several rules match, nothing is removed.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    remove.add_argument("selector", metavar="NAME-OR-TYPE/NAME[:PORT]")
    remove.add_argument("--config", type=Path, metavar="PATH", dest="rules_config", help="rules file")
    listing = commands.add_parser("list", help="print the rules with the file and line of each")
    listing.add_argument("--config", type=Path, metavar="PATH", dest="rules_config", help="rules file")
    for command, summary in (("pin", "forward a context's rules whatever the current context is"),
                             ("unpin", "let a pinned context's rules follow the current context again")):
        pinning = commands.add_parser(
            command, help=summary,
            description=f"{summary[0].upper()}{summary[1:]}: writes or removes `pinned: true` under\n"
                        "contexts: CTX: in the rules file, keeping its comments and layout. A running\n"
                        "kubetray starts or stops that context's tunnels by itself.",
            formatter_class=argparse.RawDescriptionHelpFormatter)
        pinning.add_argument("pin_context", metavar="CTX", help="an exact kubeconfig context name")
        pinning.add_argument("--config", type=Path, metavar="PATH", dest="rules_config", help="rules file")


def run_rule_command(args: argparse.Namespace) -> int:
    from trayapp.config.paths import default_rules_path
    from trayapp.rulecommands import run_add, run_list, run_pin, run_remove

    running = None if (args.rules_config or args.config) else _running_instance()
    path = args.rules_config or args.config or (running.rules_path if running else None) or default_rules_path()
    if args.command == "add":
        # Does the target exist? Asked of the cluster the edited rules are for: --kubeconfig, else
        # the kubeconfig of the kubetray whose rules file this is (the demo's own), else kubectl's.
        kubeconfig = (_kubeconfig_paths(args.kubeconfig) if args.kubeconfig
                      else running.kubeconfig_paths if running and running.rules_path == path else None)
        return run_add(path, args.target, args.port, local_port=args.local_port, namespace=args.namespace,
                       context=args.rule_context, label=args.label, kubeconfig=kubeconfig or None,
                       check_cluster=not args.no_check, check_context=args.context, pin=args.pin)
    if args.command == "remove":
        return run_remove(path, args.selector)
    if args.command in ("pin", "unpin"):
        return run_pin(path, args.pin_context, args.command == "pin")
    return run_list(path)


@dataclass(frozen=True)
class _Running:
    rules_path: Path | None  # None: the default one
    kubeconfig_paths: tuple[Path, ...]


def _running_instance() -> _Running | None:
    """The kubetray running now, if one answers. Its rules file is named when it is not the default
    (`--config`, `--demo`): an edit without --config is meant for what runs."""
    from trayapp.config.paths import default_rules_path
    from trayapp.platform.instance import ask

    answer = ask({"request": "status"}, timeout=1.0)
    if not answer:
        return None
    rules = answer.get("rulesPath")
    kubeconfig = tuple(Path(p) for p in answer.get("kubeconfigPaths") or () if isinstance(p, str))
    if not rules or Path(rules) == default_rules_path():
        return _Running(None, kubeconfig)
    print(f"kubetray is running with the rules file {rules}: editing that one.", file=sys.stderr)
    return _Running(Path(rules), kubeconfig)


def _kubeconfig_paths(explicit: str) -> tuple[Path, ...]:
    from trayapp.engine.kube import kubeconfig_paths

    return kubeconfig_paths(explicit)


def _rules_format() -> str:
    from trayapp.config.example import format_summary
    from trayapp.config.paths import default_rules_path

    return format_summary(default_rules_path())


def run_check(path: Path | None, example: bool) -> int:
    from trayapp.config.check import check_report
    from trayapp.config.example import EXAMPLE_RULES
    from trayapp.config.rules import load_rules

    if example:
        sys.stdout.write(EXAMPLE_RULES)
        return 0
    text, status = check_report(load_rules(path))
    print(text)
    return status


def run_token(action: str, context: str) -> int:
    from trayapp.config.paths import state_dir
    from trayapp.platform.secrets import SecretStore, SecretsUnavailable

    store = SecretStore(state_dir())  # also records which contexts have a token (no secrets)
    try:
        if action == "set":
            token = sys.stdin.read().strip()
            if not token:
                print("No token on standard input; nothing was stored.", file=sys.stderr)
                return 1
            store.set_token(context, token)
            print(f"Stored the token for context {context!r} in the OS keyring; kubetray uses it when "
                  "that context's kubeconfig user has no credentials.")
        elif store.delete_token(context):
            print(f"Deleted the token for context {context!r} from the OS keyring.")
        else:
            print(f"The OS keyring held no token for context {context!r}; nothing changed.")
    except SecretsUnavailable as exc:
        print(f"{exc.title}: {exc.message}", file=sys.stderr)
        return 1
    return 0


def run_autostart(action: str) -> int:
    from trayapp.platform.autostart import AutostartError, for_platform, installed_command

    backend = for_platform()
    try:
        if action == "on":
            where = backend.enable(installed_command())
            print(f"kubetray will start at login; the entry is {where}.")
        elif action == "off":
            was_on = backend.enabled()
            backend.disable()
            if was_on:
                print(f"kubetray will no longer start at login; removed {backend.location}.")
            else:
                print("kubetray was not set to start at login; nothing changed.")
        elif backend.enabled():
            print(f"Start at login is on; the entry is {backend.location}.")
        elif backend.location:
            print(f"Start at login is off; turning it on writes {backend.location}.")
        else:
            print("Start at login is off, and this system does not support it.")
    except AutostartError as exc:
        print(f"{exc.title}: {exc.message}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return run_check(args.check_config or args.config, args.example)
    if args.command == "status":
        from trayapp.status import run_status

        return run_status(args.status_json or args.json)
    if args.command == "token":
        return run_token(args.action, args.token_context)
    if args.command == "autostart":
        return run_autostart(args.action)
    if args.command in ("add", "remove", "list", "pin", "unpin"):
        return run_rule_command(args)
    if args.headless or args.json:
        from trayapp.startup import run_headless

        return run_headless(args)
    from trayapp.ui.preflight import desktop_problem

    problem = desktop_problem()
    if problem is not None:
        print(f"{problem}, so kubetray runs without the tray, as with --headless.", file=sys.stderr)
        from trayapp.startup import run_headless

        return run_headless(args)
    from trayapp.ui.app import run_tray

    return run_tray(args)


if __name__ == "__main__":
    sys.exit(main())
