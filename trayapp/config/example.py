"""The rules file kubetray writes when the user asks to open one that does not exist yet."""

from __future__ import annotations

from pathlib import Path

EXAMPLE_RULES = """\
# kubetray rules. kubetray applies this file as soon as it is saved.
# Each rule uses Skaffold's portForward fields; see `kubetray check` to validate it.
#
# portForward:
#   - resourceType: service        # pod, service, deployment, replicaset, statefulset,
#                                  # replicationcontroller, daemonset, job or cronjob
#     resourceName: web
#     namespace: default           # default: default
#     port: 80                     # a number or a named port
#     localPort: 8080              # default: the same as port; a busy port falls back
#     name: web                    # how the tray labels it (optional)
#
# Rules for some contexts only (glob patterns on the context name):
# contexts:
#   kind-*:
#     portForward:
#       - {resourceType: deployment, resourceName: api, port: 9090}
#
# Forward what Skaffold deployed, and services annotated kubetray.dev/forward: "true":
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
