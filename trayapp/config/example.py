"""The example rules file: written when the user opens a rules file that does not exist yet,
printed by `kubetray check --example`, and summed up in `kubetray check --help`."""

from __future__ import annotations

from pathlib import Path

EXAMPLE_RULES = """\
# kubetray rules. kubetray applies this file as soon as it is saved.
# Each rule uses Skaffold's portForward fields; `kubetray check` validates it.
#
# portForward:
#   - resourceType: service        # pod, service, deployment, replicaset, statefulset,
#                                  # replicationcontroller, daemonset, job or cronjob
#     resourceName: web
#     namespace: default           # default: default
#     port: 80                     # a number or a named port
#     localPort: 8080              # default: the same as port; a busy port falls back
#     address: 127.0.0.1           # default; 0.0.0.0 opens the port to your network
#     name: web                    # how the tray labels it (optional)
#
# Rules for some contexts only (glob patterns on the context name):
# contexts:
#   kind-*:
#     portForward:
#       - {resourceType: deployment, resourceName: api, port: 9090}
#
# What Skaffold deployed is forwarded by default. Services and pods annotated
# kubetray.dev/forward: "true" are forwarded only if you opt in (anyone who may edit a pod could
# otherwise open a port on your machine):
# auto:
#   skaffold: true
#   annotation: true
portForward: []
"""


def ensure_rules_file(path: Path) -> bool:
    """Create `path` with the commented example when it is missing; True if it was created."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as out:
            out.write(EXAMPLE_RULES)
    except FileExistsError:
        return False
    return True


def format_summary(path: Path) -> str:
    """A few lines on what the rules file is and where it goes, for `kubetray check --help`."""
    return (
        f"The rules file is YAML, read from {path} unless --config names another.\n"
        "Each rule uses Skaffold's portForward fields, for example:\n"
        "\n"
        "  portForward:\n"
        "    - resourceType: service      # or pod, deployment, statefulset, ...\n"
        "      resourceName: web\n"
        "      namespace: default\n"
        "      port: 80                   # a number or a port name\n"
        "      localPort: 8080            # a busy port falls back to the next free one\n"
        "\n"
        "`kubetray check --example` prints a commented example to start from; the tray's\n"
        '"Open rules file" creates the file with that example when it does not exist.'
    )
