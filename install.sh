#!/usr/bin/env bash
# Installs, upgrades or removes the collector kiosk on Raspberry Pi OS or
# Debian 12/13 (arm64, armhf, amd64), from the source tree this script sits in.
#
# Safe to run again: a second run with the same source changes nothing, and
# configuration and data are never overwritten. Every release goes into its own
# folder under /opt/kiosk/releases and becomes live by one atomic switch of
# /opt/kiosk/current, so a failed step leaves the previous release running.
# Run with --help for the options; docs/DEPLOYMENT.md walks through a device.

set -Eeuo pipefail
umask 022

usage() {
    cat <<'EOF'
Usage: install.sh [OPTIONS]

Installs or upgrades the collector kiosk from this source tree.

Options:
  --role device|hq   what this machine is (default: device)
  --headless         device: enable kiosk-agent.service (no screen) instead
                     of kiosk.service (the UI on tty1)
  --key-file FILE    copy the device key made by HQ to /etc/kiosk/device.key
  --no-start         install and enable the services, but leave them stopped
  --no-venv          lay out files only, without the Python environment
                     (for images and tests; the services cannot run)
  --prefix DIR       lay every file under DIR instead of / and skip the system
                     steps (packages, users, ownership, systemctl, udev)
  --uninstall        remove the program, services and rules; keep the
                     configuration in /etc/kiosk and the data in /var/lib/kiosk
  -h, --help         show this help

Exit status: 0 done, 1 a step failed (nothing half-done is left behind),
2 bad options, 3 this system cannot take the kiosk (not root, not Debian,
no Python 3.11 or newer).
EOF
}

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SRC

# Where things live, relative to the root (/, or --prefix).
readonly APP=/opt/kiosk
readonly ETC=/etc/kiosk
readonly DATA=/var/lib/kiosk
readonly UNIT_DIR=/etc/systemd/system
readonly UDEV_RULE=/etc/udev/rules.d/99-kiosk.rules
readonly CHRONY_CONF=/etc/chrony/conf.d/kiosk-gpsd.conf
readonly BIN_LINK=/usr/local/bin/kiosk
readonly USER_NAME=kiosk

role=device
headless=0
key_file=""
start=1
venv=1
root=""
action=install
changed=0
wrote=0
program_changed=0
units_changed=0
cleanup=()

say() { printf 'install: %s\n' "$*"; }
warn() { printf 'install: warning: %s\n' "$*" >&2; }
die() {
    printf 'install: error: %s\n' "$1" >&2
    exit "${2:-1}"
}

# A failed step leaves no half-done release or half-written file behind: the
# paths being built are registered here and removed on any exit before they
# are complete.
on_exit() {
    local status=$? path
    for path in "${cleanup[@]}"; do
        rm -rf -- "$path"
    done
    if [ "$status" -ne 0 ] && [ "$status" -ne 2 ] && [ "$status" -ne 3 ]; then
        printf 'install: failed; the previous installation, if any, is unchanged\n' >&2
    fi
}
on_error() {
    printf 'install: error: step failed at line %s: %s\n' "$1" "$2" >&2
}
# forget PATH: a path that is now complete and must stay.
forget() {
    local kept=() path
    for path in "${cleanup[@]}"; do
        [ "$path" = "$1" ] || kept+=("$path")
    done
    cleanup=("${kept[@]}")
}
trap on_exit EXIT
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --role)
                [ $# -ge 2 ] || die "--role needs device or hq" 2
                role=$2
                shift
                ;;
            --role=*) role=${1#--role=} ;;
            --headless) headless=1 ;;
            --key-file)
                [ $# -ge 2 ] || die "--key-file needs a file" 2
                key_file=$2
                shift
                ;;
            --key-file=*) key_file=${1#--key-file=} ;;
            --no-start) start=0 ;;
            --no-venv) venv=0 ;;
            --prefix)
                [ $# -ge 2 ] || die "--prefix needs a folder" 2
                root=$2
                shift
                ;;
            --prefix=*) root=${1#--prefix=} ;;
            --uninstall) action=uninstall ;;
            -h | --help)
                usage
                exit 0
                ;;
            *) die "unknown option '$1' (see --help)" 2 ;;
        esac
        shift
    done

    case "$role" in
        device | hq) ;;
        *) die "--role must be device or hq, not '$role'" 2 ;;
    esac
    if [ -n "$root" ]; then
        case "$root" in
            /*) ;;
            *) root="$PWD/$root" ;;
        esac
        root=${root%/}
        [ -n "$root" ] || die "--prefix must not be / (run without --prefix instead)" 2
    fi
    if [ -n "$key_file" ] && [ "$role" != device ]; then
        die "--key-file is for a device; HQ keeps device keys in its keys_dir" 2
    fi
}

in_prefix() { [ -n "$root" ]; }

# ---------------------------------------------------------------------------
# Checks before anything changes

check_system() {
    if in_prefix; then
        return
    fi
    [ "$(id -u)" -eq 0 ] || die "run as root (sudo $0 $*), or use --prefix DIR to lay files into a folder" 3

    local id="" version="" like=""
    if [ -r /etc/os-release ]; then
        # shellcheck disable=SC1091
        id=$(. /etc/os-release && printf '%s' "${ID:-}")
        # shellcheck disable=SC1091
        version=$(. /etc/os-release && printf '%s' "${VERSION_ID:-}")
        # shellcheck disable=SC1091
        like=$(. /etc/os-release && printf '%s' "${ID_LIKE:-}")
    fi
    case "$id" in
        debian | raspbian) ;;
        *) die "unsupported system '${id:-unknown}' (${like:-no ID_LIKE}): the kiosk installs on Raspberry Pi OS or Debian 12 or 13" 3 ;;
    esac
    case "$version" in
        12 | 13) ;;
        *) die "unsupported Debian release '${version:-unknown}': the kiosk installs on Debian 12 (bookworm) or 13 (trixie)" 3 ;;
    esac

    local arch
    arch=$(dpkg --print-architecture)
    case "$arch" in
        arm64 | armhf | amd64) ;;
        *) die "unsupported architecture '$arch': the kiosk installs on arm64, armhf or amd64" 3 ;;
    esac
}

check_source() {
    local file
    for file in pyproject.toml kiosk/__init__.py config/kiosk.example.toml \
        config/udev/99-kiosk.rules config/chrony/kiosk-gpsd.conf \
        config/mosquitto/kiosk.conf config/mosquitto/kiosk.acl \
        systemd/kiosk.service systemd/kiosk-agent.service systemd/kiosk-hq.service; do
        [ -f "$SRC/$file" ] || die "the source tree $SRC is incomplete: $file is missing" 3
    done
}

python_bin() {
    # The Debian interpreter when there is one, so python3-venv applies.
    if [ -x /usr/bin/python3 ]; then
        printf '/usr/bin/python3'
    else
        command -v python3 || true
    fi
}

check_python() {
    local python
    python=$(python_bin)
    [ -n "$python" ] || die "no python3 found; the kiosk needs Python 3.11 or newer (apt-get install python3)" 3
    if ! "$python" -c 'import sys; raise SystemExit(sys.version_info < (3, 11))'; then
        die "$python is Python $("$python" -c 'import platform; print(platform.python_version())'); the kiosk needs Python 3.11 or newer (Debian 12 or later)" 3
    fi
}

# ---------------------------------------------------------------------------
# Small idempotent building blocks. Each one changes a path only when it
# differs from what is wanted, and sets `changed` when it does; the put_*
# ones also set `wrote` to 1 when they wrote, 0 when they left the path alone.
# They always return 0, so that a failure inside them still stops the script
# (bash ignores `set -e` inside a function called as a condition).

owner_of() { stat -c '%U:%G' "$1"; }
mode_of() { stat -c '%a' "$1"; }

# ensure_dir PATH MODE OWNER
ensure_dir() {
    local path=$root$1 mode=$2 owner=$3
    if [ ! -d "$path" ]; then
        mkdir -p -- "$path"
        changed=1
    fi
    if [ "$(mode_of "$path")" != "${mode#0}" ]; then
        chmod "$mode" -- "$path"
        changed=1
    fi
    set_owner "$path" "$owner"
}

# set_owner PATH OWNER: skipped under --prefix, where there is no kiosk user.
set_owner() {
    if in_prefix; then
        return
    fi
    if [ "$(owner_of "$1")" != "$2" ]; then
        chown -h -- "$2" "$1"
        changed=1
    fi
}

# put_file SOURCE DEST MODE [OWNER]: a file the installer owns; replaced when
# its content differs, written beside the destination and renamed into place.
put_file() {
    local source=$1 dest=$root$2 mode=$3 owner=${4:-root:root}
    mkdir -p -- "$(dirname -- "$dest")"
    if [ -f "$dest" ] && cmp -s -- "$source" "$dest"; then
        if [ "$(mode_of "$dest")" != "${mode#0}" ]; then
            chmod "$mode" -- "$dest"
            changed=1
        fi
        set_owner "$dest" "$owner"
        wrote=0
        return 0
    fi
    local tmp="$dest.new.$$"
    cleanup+=("$tmp")
    cp -- "$source" "$tmp"
    chmod "$mode" -- "$tmp"
    set_owner "$tmp" "$owner"
    mv -f -- "$tmp" "$dest"
    forget "$tmp"
    changed=1
    wrote=1
    say "wrote $2"
}

# put_config SOURCE DEST MODE OWNER: configuration; laid only when absent.
put_config() {
    local dest=$root$2
    if [ -e "$dest" ] || [ -L "$dest" ]; then
        wrote=0
        return 0
    fi
    put_file "$@"
}

# remove_path PATH: removes a file or folder when present.
remove_path() {
    local path=$root$1
    if [ -e "$path" ] || [ -L "$path" ]; then
        rm -rf -- "$path"
        changed=1
        say "removed $1"
    fi
}

# put_link TARGET LINK: a symbolic link, switched atomically when it differs.
put_link() {
    local target=$1 link=$root$2
    if [ -L "$link" ] && [ "$(readlink -- "$link")" = "$target" ]; then
        wrote=0
        return 0
    fi
    mkdir -p -- "$(dirname -- "$link")"
    local tmp="$link.new.$$"
    cleanup+=("$tmp")
    ln -sfn -- "$target" "$tmp"
    mv -fT -- "$tmp" "$link"
    forget "$tmp"
    changed=1
    wrote=1
}

# ---------------------------------------------------------------------------
# System steps (skipped under --prefix)

uses_gpsd() {
    # The GPS source as the live configuration (or the example, before there
    # is one) says. A line-based read of [gps] source is enough here: the
    # program validates the whole file at start.
    local config=$root$ETC/kiosk.toml
    [ -f "$config" ] || config=$SRC/config/kiosk.example.toml
    awk '
        /^[[:space:]]*\[/ { section = $0; gsub(/[][[:space:]]/, "", section) }
        section == "gps" && /^[[:space:]]*source[[:space:]]*=/ {
            if ($0 ~ /=[[:space:]]*["\047]gpsd:/) found = 1
        }
        END { exit !found }
    ' "$config"
}

wanted_packages() {
    local packages=(python3 python3-venv chrony)
    if [ "$role" = device ]; then
        packages+=(libusb-1.0-0)
        if uses_gpsd; then
            packages+=(gpsd)
        fi
    else
        packages+=(mosquitto)
    fi
    printf '%s\n' "${packages[@]}"
}

install_packages() {
    local missing=() package
    while read -r package; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed"; then
            missing+=("$package")
        fi
    done < <(wanted_packages)
    if [ ${#missing[@]} -eq 0 ]; then
        return
    fi

    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed; check the network and /etc/apt/sources.list"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
    changed=1
}

ensure_user() {
    if ! getent passwd "$USER_NAME" >/dev/null; then
        useradd --system --user-group --home-dir "$DATA" --no-create-home \
            --shell /usr/sbin/nologin --comment "Collector kiosk" "$USER_NAME"
        changed=1
        say "created system user $USER_NAME"
    fi

    # Serial GPS and printers (dialout), USB printers (lp), and the Pi's GPIO
    # pins for the panic button and lid switch (gpio, Raspberry Pi OS only).
    # The console needs no group: systemd hands tty1 to the service.
    local groups=() group
    if [ "$role" = device ]; then
        groups=(dialout lp gpio)
    fi
    for group in "${groups[@]}"; do
        getent group "$group" >/dev/null || continue
        if ! id -nG "$USER_NAME" | tr ' ' '\n' | grep -qx "$group"; then
            usermod -a -G "$group" "$USER_NAME"
            changed=1
            say "added $USER_NAME to group $group"
        fi
    done
}

# ---------------------------------------------------------------------------
# Configuration and data: created when absent, never replaced.

install_config() {
    ensure_dir "$ETC" 0750 "root:$USER_NAME"
    ensure_dir "$DATA" 0700 "$USER_NAME:$USER_NAME"
    ensure_dir "$DATA/backups" 0700 "$USER_NAME:$USER_NAME"
    if [ "$role" = hq ]; then
        ensure_dir "$ETC/hq-keys" 0750 "root:$USER_NAME"
    fi

    put_config "$SRC/config/kiosk.example.toml" "$ETC/kiosk.toml" 0640 "root:$USER_NAME"
    if [ "$wrote" -eq 1 ]; then
        say "edit $ETC/kiosk.toml (device id, broker, printer, GPS) before the first start"
    fi

    if [ -n "$key_file" ]; then
        install_key
    fi
}

install_key() {
    [ -r "$key_file" ] || die "cannot read the key file $key_file"
    if ! grep -Eqx '[0-9a-fA-F]{64}' "$key_file"; then
        die "$key_file must hold the device key as 64 hex digits (made by HQ: kiosk hq add-device)" 2
    fi
    local dest=$root$ETC/device.key
    if [ -e "$dest" ] && ! cmp -s -- "$key_file" "$dest"; then
        die "$ETC/device.key already holds a different key; a device keeps its key for life (docs/DEPLOYMENT.md: replacing a device). Remove it first only if HQ re-keyed this device" 2
    fi
    put_config "$key_file" "$ETC/device.key" 0640 "root:$USER_NAME"
    if [ "$wrote" -eq 1 ]; then
        if ! grep -Eq '^[[:space:]]*key_file[[:space:]]*=.*device\.key' "$root$ETC/kiosk.toml"; then
            warn "set [security] key_file = \"$ETC/device.key\" in $ETC/kiosk.toml"
        fi
    fi
}

# ---------------------------------------------------------------------------
# The program: one folder per release, switched in by a symbolic link.

release_id() {
    local version hash
    version=$(sed -n 's/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$SRC/pyproject.toml" | head -n 1)
    # The release is named by its content too, so a changed tree with the same
    # version is still installed, and an unchanged one is left alone.
    hash=$(
        cd "$SRC" && find pyproject.toml kiosk config systemd docs install.sh \
            -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 2>/dev/null \
            | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12
    )
    printf '%s-%s%s' "${version:-0}" "$hash" "$([ "$venv" -eq 1 ] || printf -- '-novenv')"
}

build_release() {
    local id=$1 dir=$root$APP/releases/$1
    if [ -f "$dir/.complete" ]; then
        return 0
    fi

    # A release folder without its mark is what an interrupted run left; it
    # was never live, so it is built again from scratch.
    rm -rf -- "$dir"
    cleanup+=("$dir")
    say "building release $id"
    mkdir -p -- "$dir/share"
    cp -R -- "$SRC/config" "$SRC/systemd" "$dir/share/"
    if [ -d "$SRC/docs" ]; then
        cp -R -- "$SRC/docs" "$dir/share/"
    fi
    cp -- "$SRC/install.sh" "$dir/share/"

    # A virtual environment is not relocatable, so it is made at its final
    # path; the release only goes live at the switch of `current` below.
    if [ "$venv" -eq 1 ]; then
        local extra=usb
        [ "$role" = hq ] && extra=hq
        "$(python_bin)" -m venv "$dir/venv"
        "$dir/venv/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
        "$dir/venv/bin/pip" install --quiet --disable-pip-version-check "${SRC}[$extra]" \
            || die "installing the Python package failed (network, or a wheel for this system?)"
        "$dir/venv/bin/kiosk" --help >/dev/null \
            || die "the new release does not start: $dir/venv/bin/kiosk --help failed"
    fi

    printf '%s\n' "$id" >"$dir/.complete"
    forget "$dir"
    changed=1
}

backup_database() {
    local db=$root$DATA/kiosk.db
    [ -f "$db" ] || return 0

    local stamp dest
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    dest=$root$DATA/backups/kiosk-$stamp-before-$1.db
    say "backing up the database to ${dest#"$root"}"
    cleanup+=("$dest")

    # SQLite's online backup gives a consistent copy even while the service
    # writes. It runs as the kiosk user, so no file in the data folder ends up
    # owned by root.
    local runner=()
    if ! in_prefix; then
        runner=(runuser -u "$USER_NAME" --)
    fi
    "${runner[@]}" "$(python_bin)" - "$db" "$dest" <<'EOF' || die "backing up $db failed; the upgrade was not applied"
import sqlite3
import sys

source = sqlite3.connect(sys.argv[1])
target = sqlite3.connect(sys.argv[2])
source.backup(target)
if target.execute("PRAGMA quick_check").fetchone()[0] != "ok":
    raise SystemExit("the backup copy fails its integrity check")
target.close()
source.close()
EOF
    chmod 0600 -- "$dest"
    forget "$dest"
}

install_program() {
    ensure_dir "$APP" 0755 root:root
    ensure_dir "$APP/releases" 0755 root:root

    local id current="" link=$root$APP/current
    id=$(release_id)
    if [ -L "$link" ]; then
        current=$(basename -- "$(readlink -- "$link")")
    fi

    build_release "$id"
    if [ "$current" != "$id" ]; then
        if [ -n "$current" ]; then
            backup_database "$current"
            put_link "releases/$current" "$APP/previous"
        fi
        put_link "releases/$id" "$APP/current"
        say "release $id is live${current:+ (was $current)}"
        program_changed=1
    fi
    put_link current/venv "$APP/venv"
    put_link "$APP/venv/bin/kiosk" "$BIN_LINK"
    prune_releases
}

# Keeps the live release and the one before it (for a roll-back), no other.
prune_releases() {
    local keep=() link dir
    for link in current previous; do
        if [ -L "$root$APP/$link" ]; then
            keep+=("$(basename -- "$(readlink -- "$root$APP/$link")")")
        fi
    done
    for dir in "$root$APP/releases"/*; do
        [ -d "$dir" ] || continue
        if printf '%s\n' "${keep[@]}" | grep -qxF -- "$(basename -- "$dir")"; then
            continue
        fi
        rm -rf -- "$dir"
        changed=1
        say "removed old release $(basename -- "$dir")"
    done
}

# ---------------------------------------------------------------------------
# Services, rules and the clock

units_for_role() {
    if [ "$role" = device ]; then
        printf '%s\n' kiosk.service kiosk-agent.service
    else
        printf '%s\n' kiosk-hq.service
    fi
}

install_units() {
    local unit
    while read -r unit; do
        put_file "$SRC/systemd/$unit" "$UNIT_DIR/$unit" 0644
        if [ "$wrote" -eq 1 ]; then
            units_changed=1
        fi
    done < <(units_for_role)
}

install_udev() {
    [ "$role" = device ] || return 0
    put_file "$SRC/config/udev/99-kiosk.rules" "$UDEV_RULE" 0644
    if [ "$wrote" -eq 1 ] && ! in_prefix; then
        udevadm control --reload || warn "udevadm control --reload failed; the rules apply after a reboot"
        udevadm trigger --action=add --subsystem-match=tty --subsystem-match=usb \
            --subsystem-match=usbmisc || true
    fi
}

install_chrony() {
    [ "$role" = device ] || return 0
    local now=0
    if uses_gpsd; then
        put_file "$SRC/config/chrony/kiosk-gpsd.conf" "$CHRONY_CONF" 0644
        now=$wrote
        configure_gpsd
    elif [ -e "$root$CHRONY_CONF" ]; then
        remove_path "$CHRONY_CONF"
        now=1
    fi
    if [ "$now" -eq 1 ] && ! in_prefix; then
        systemctl try-restart chrony.service || warn "restarting chrony failed"
    fi
}

# gpsd must read the receiver from boot, with no client connected, to feed
# chrony. Its defaults file is only filled in while it is still the package's
# own (no device set); a file someone has edited is left as it is.
configure_gpsd() {
    local defaults=$root/etc/default/gpsd
    [ -f "$defaults" ] || return 0
    grep -qx 'DEVICES=""' "$defaults" || return 0

    local tmp="$defaults.new.$$"
    cleanup+=("$tmp")
    sed -e 's|^DEVICES=""$|DEVICES="/dev/kiosk-gps"|' \
        -e 's|^GPSD_OPTIONS=""$|GPSD_OPTIONS="-n"|' "$defaults" >"$tmp"
    chmod 0644 -- "$tmp"
    mv -f -- "$tmp" "$defaults"
    forget "$tmp"
    changed=1
    say "gpsd now reads /dev/kiosk-gps from boot (/etc/default/gpsd)"
    if ! in_prefix; then
        systemctl try-restart gpsd.service || warn "restarting gpsd failed"
    fi
}

install_broker() {
    [ "$role" = hq ] || return 0
    local owner=root:root
    if ! in_prefix && getent group mosquitto >/dev/null; then
        owner=root:mosquitto
    fi
    put_config "$SRC/config/mosquitto/kiosk.acl" /etc/mosquitto/kiosk.acl 0640 "$owner"
    if [ ! -e "$root/etc/mosquitto/kiosk.passwd" ]; then
        mkdir -p -- "$root/etc/mosquitto"
        : >"$root/etc/mosquitto/kiosk.passwd"
        chmod 0640 -- "$root/etc/mosquitto/kiosk.passwd"
        set_owner "$root/etc/mosquitto/kiosk.passwd" "$owner"
        changed=1
    fi

    # The listener needs its certificate; without it Mosquitto would not start
    # at all, so the listener is added only once the files are in place.
    local certs=$root/etc/mosquitto/certs
    if [ -f "$certs/server.crt" ] && [ -f "$certs/server.key" ]; then
        put_config "$SRC/config/mosquitto/kiosk.conf" /etc/mosquitto/conf.d/kiosk.conf 0644
        if [ "$wrote" -eq 1 ] && ! in_prefix; then
            systemctl restart mosquitto.service || warn "restarting mosquitto failed: journalctl -u mosquitto"
        fi
    elif [ ! -e "$root/etc/mosquitto/conf.d/kiosk.conf" ]; then
        warn "broker not configured yet: put server.crt and server.key in /etc/mosquitto/certs and run install.sh --role hq again (config/mosquitto/README.md)"
    fi
}

start_units() {
    in_prefix && return 0
    local main other=""
    if [ "$role" = hq ]; then
        main=kiosk-hq.service
    elif [ "$headless" -eq 1 ]; then
        main=kiosk-agent.service
        other=kiosk.service
    else
        main=kiosk.service
        other=kiosk-agent.service
    fi

    if [ "$units_changed" -eq 1 ]; then
        systemctl daemon-reload
    fi
    if [ -n "$other" ] && systemctl is-enabled --quiet "$other" 2>/dev/null; then
        systemctl disable --quiet "$other"
        changed=1
    fi
    if ! systemctl is-enabled --quiet "$main" 2>/dev/null; then
        systemctl enable --quiet "$main"
        changed=1
        say "enabled $main (starts on boot)"
    fi

    if [ "$start" -eq 0 ]; then
        say "left $main stopped (--no-start): systemctl start $main"
        return 0
    fi
    if [ "$program_changed" -eq 1 ] || [ "$units_changed" -eq 1 ]; then
        systemctl restart "$main"
        say "started $main"
    elif ! systemctl is-active --quiet "$main"; then
        systemctl start "$main"
        changed=1
        say "started $main"
    fi
}

# ---------------------------------------------------------------------------
# Uninstall: the program, services and rules go; configuration and data stay.

uninstall() {
    local unit
    if ! in_prefix; then
        for unit in kiosk.service kiosk-agent.service kiosk-hq.service; do
            if [ -e "$UNIT_DIR/$unit" ]; then
                systemctl disable --now --quiet "$unit" || warn "could not stop $unit"
            fi
        done
    fi
    for unit in kiosk.service kiosk-agent.service kiosk-hq.service; do
        remove_path "$UNIT_DIR/$unit"
    done
    remove_path "$UDEV_RULE"
    remove_path "$CHRONY_CONF"
    remove_path "$BIN_LINK"
    remove_path "$APP"

    if ! in_prefix && [ "$changed" -eq 1 ]; then
        systemctl daemon-reload
        udevadm control --reload || true
        systemctl try-restart chrony.service || true
    fi
    say "kept the configuration in $ETC and the data in $DATA (remove them by hand to erase the device)"
}

main() {
    parse_args "$@"

    check_system "$@"
    if [ "$action" = uninstall ]; then
        uninstall
        return
    fi

    check_source
    if ! in_prefix; then
        # Python may come with the packages, so it is checked after them.
        install_packages
    fi
    check_python
    if ! in_prefix; then
        ensure_user
    fi

    install_config
    install_program
    install_units
    install_udev
    install_chrony
    install_broker
    start_units

    if [ "$changed" -eq 0 ]; then
        say "already up to date; nothing changed"
    else
        say "done"
    fi
}

main "$@"
