#!/usr/bin/env bash
# A throwaway Linux desktop for kubetray's tests: a virtual X screen (Xvfb), a tray host, a
# notification daemon (dunst) and an unlocked Secret Service (gnome-keyring), all with a fresh
# HOME and XDG_RUNTIME_DIR so nothing of the user's own session is read or changed.
# Starts them, waits until each one is really serving, runs "$@" inside, then stops them all and
# exits with the command's status.
#
#   [KUBETRAY_TRAY_HOST=xembed|sni] dbus-run-session -- tests/desktop/with-desktop.sh COMMAND [ARG...]
#
# The tray host is one of the two kinds Linux desktops have: `xembed` (the default) is trayer, an
# XEmbed panel that swallows the icon's X window; `sni` is a StatusNotifierItem host, as KDE,
# GNOME with AppIndicator, XFCE, Cinnamon and the Sway bars are: status-notifier-watcher keeps the
# list of items on the bus and gtk-sni-tray-standalone draws their icons and D-Bus menus in a bar.
#
# dbus-run-session gives the session its private bus and stops that bus when this script ends.
# The tests' `desktop` fixture (tests/desktop/conftest.py) starts it this way.
set -euo pipefail

if [ -z "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
    echo "with-desktop.sh: no session bus; run me as: dbus-run-session -- $0 COMMAND" >&2
    exit 2
fi
TRAY_HOST="${KUBETRAY_TRAY_HOST:-xembed}"
case "$TRAY_HOST" in
    xembed | sni) ;;
    *) echo "with-desktop.sh: KUBETRAY_TRAY_HOST is xembed or sni, not '$TRAY_HOST'" >&2; exit 2 ;;
esac
if [ "$#" -eq 0 ]; then
    echo "with-desktop.sh: give the command to run inside the desktop session" >&2
    exit 2
fi

SESSION_DIR="$(mktemp -d "${TMPDIR:-/tmp}/kubetray-desktop.XXXXXX")"
chmod 700 "$SESSION_DIR"
LOGS="$SESSION_DIR/logs"
mkdir -p "$LOGS"

# One runtime dir per session: a second gnome-keyring finding the first one's socket there hangs.
# A fresh HOME: a login keyring left by an earlier run has a password we would not know, and
# gnome-keyring would then open a password dialog on the virtual screen and block forever.
export XDG_RUNTIME_DIR="$SESSION_DIR/runtime"
export HOME="$SESSION_DIR/home"
export XDG_CONFIG_HOME="$HOME/.config"
export XDG_DATA_HOME="$HOME/.local/share"
export XDG_CACHE_HOME="$HOME/.cache"
export XDG_STATE_HOME="$HOME/.local/state"
mkdir -p -m 700 "$XDG_RUNTIME_DIR" "$HOME"
mkdir -p "$XDG_CONFIG_HOME" "$XDG_DATA_HOME" "$XDG_CACHE_HOME" "$XDG_STATE_HOME"

# Without a named desktop, xdg-open uses its generic mode, which honours $BROWSER; and no
# Wayland socket of the developer's session must lure a client away from the virtual screen.
unset XDG_CURRENT_DESKTOP DESKTOP_SESSION WAYLAND_DISPLAY XAUTHORITY

SERVICE_PIDS=()
SERVICE_NAMES=()

stop_services() {
    # Newest first: the X clients go before the X server they draw on.
    local i
    for ((i = ${#SERVICE_PIDS[@]} - 1; i >= 0; i--)); do
        kill "${SERVICE_PIDS[i]}" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$SESSION_DIR"
}
trap stop_services EXIT
# A plain `kill` of this script must still stop the services; exiting runs the EXIT trap.
trap 'exit 143' TERM
trap 'exit 130' INT
trap 'exit 129' HUP

# start NAME [--input FILE] COMMAND...: run a service in the background, its output in
# logs/NAME.log. The input redirection has to sit on the background command itself: bash gives
# a background job of a script /dev/null as stdin unless that command redirects it.
start() {
    local name="$1" input=/dev/null
    shift
    if [ "$1" = --input ]; then
        input="$2"
        shift 2
    fi
    "$@" <"$input" >"$LOGS/$name.log" 2>&1 &
    SERVICE_PIDS+=("$!")
    SERVICE_NAMES+=("$name")
}

give_up() {
    echo "with-desktop.sh: $1; the services' last log lines:" >&2
    tail -n 5 "$LOGS"/*.log >&2 || true
    exit 1
}

# wait_until WHAT TEST...: poll TEST for up to 10 s; give up at once when a service has died.
wait_until() {
    local what="$1" tries i
    shift
    for ((tries = 0; tries < 200; tries++)); do
        if "$@"; then
            return 0
        fi
        for i in "${!SERVICE_PIDS[@]}"; do
            kill -0 "${SERVICE_PIDS[i]}" 2>/dev/null || give_up "${SERVICE_NAMES[i]} exited while waiting for $what"
        done
        sleep 0.05
    done
    give_up "$what did not come up within 10 s"
}

# -displayfd makes Xvfb pick a free display number and write it once it accepts clients, so a
# stale server on :99 never gets in the way. -noreset: by default the server resets whenever its
# last client leaves, and a client connecting during that reset is refused ("cannot open
# display"); a quick probe by one service at start-up made trayer or dunst fail about 1 run in 16.
start xvfb Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp -noreset 3>"$SESSION_DIR/display"
wait_until "Xvfb" test -s "$SESSION_DIR/display"
export DISPLAY=":$(head -n 1 "$SESSION_DIR/display")"

# Services the bus starts on demand (dunst, gnome-keyring's other parts) must see this display
# and these folders, not the ones dbus-run-session inherited.
dbus-update-activation-environment DISPLAY XDG_RUNTIME_DIR HOME XDG_CONFIG_HOME XDG_DATA_HOME \
    XDG_CACHE_HOME XDG_STATE_HOME

bus_has() {
    # ListNames, unlike a call to the name itself, never starts a service by D-Bus activation.
    dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.ListNames | grep -q "\"$1\""
}
tray_panel_shown() {
    xwininfo -root -tree | grep -q '("panel" "trayer")'
}
sni_host_registered() {
    # Qt picks StatusNotifierItem over XEmbed once, when an app shows its first icon, as soon as
    # the watcher is on the bus (host or not); the tests also need the host drawing the items.
    dbus-send --session --print-reply --dest=org.kde.StatusNotifierWatcher /StatusNotifierWatcher \
        org.freedesktop.DBus.Properties.Get string:org.kde.StatusNotifierWatcher \
        string:IsStatusNotifierHostRegistered 2>/dev/null | grep -q 'boolean true'
}
sni_bar_shown() {
    xwininfo -root -tree | grep -q '("gtk-sni-tray-standalone" '
}

if [ "$TRAY_HOST" = sni ]; then
    start watcher status-notifier-watcher
    # The host registers with the watcher when it starts, so the watcher must be on the bus first.
    wait_until "status-notifier-watcher (org.kde.StatusNotifierWatcher)" bus_has org.kde.StatusNotifierWatcher
    # NO_AT_BRIDGE: GTK would otherwise start the accessibility bus (at-spi) by D-Bus activation,
    # two more daemons for nothing the tests look at.
    start sni-host env NO_AT_BRIDGE=1 gtk-sni-tray-standalone --top
else
    start trayer trayer --edge top --align right --widthtype pixel --width 200 --height 32 \
        --transparent true --alpha 0 --tint 0x3050a0
fi
start dunst dunst
# --unlock reads the new login keyring's password from stdin; unlocked now, nothing prompts later.
# From a file, not a pipe: a pipeline would make the recorded PID a shell, and stopping that
# shell would leave the daemon running.
printf %s "${TEST_KEYRING_PASSWORD:-test}" >"$SESSION_DIR/keyring-password"
start keyring --input "$SESSION_DIR/keyring-password" \
    gnome-keyring-daemon --foreground --unlock --components=secrets

if [ "$TRAY_HOST" = sni ]; then
    wait_until "gtk-sni-tray-standalone's registration as a StatusNotifierItem host" sni_host_registered
    wait_until "gtk-sni-tray-standalone's bar" sni_bar_shown
else
    wait_until "the trayer panel" tray_panel_shown
fi
wait_until "dunst (org.freedesktop.Notifications)" bus_has org.freedesktop.Notifications
wait_until "gnome-keyring (org.freedesktop.secrets)" bus_has org.freedesktop.secrets
# The login keyring file appears once the password was read and the keyring created unlocked;
# without it, the first secret a test stores would open a password prompt and hang.
wait_until "gnome-keyring's unlocked login keyring" test -s "$XDG_DATA_HOME/keyrings/login.keyring"
rm -f "$SESSION_DIR/keyring-password"

# Not `exec`: this shell has to outlive the command to stop the services afterwards.
status=0
"$@" || status=$?
exit "$status"
