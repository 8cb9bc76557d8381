#!/usr/bin/env bash
# Install the unikernel as a systemd service on Debian or Ubuntu, or upgrade,
# roll back or remove it. Run as root; running it again is harmless.
#
# usage: install.sh [--image FILE] [--site DIR | --bundle FILE] [--instance NAME=PORT]...
#                   [--root DIR]
#        install.sh --rollback [--root DIR]
#        install.sh --uninstall [--purge] [--root DIR]
#
# Install / upgrade (the default):
#   - installs QEMU (qemu-system-x86) and curl with apt-get if missing;
#   - creates the system user `unikernel` (and the group `kvm` if missing);
#   - copies the image (FILE, default target/image/release/unikernel.elf of
#     this repository, built by `cargo image`) to
#     /usr/local/lib/unikernel/unikernel.elf, keeping the one it replaces as
#     unikernel.elf.previous; the units to /etc/systemd/system; the health
#     check to /usr/local/lib/unikernel; the documentation and examples to
#     /usr/local/share/doc/unikernel;
#   - with --bundle FILE (a site bundle, scripts/bundle DIR -o FILE) or --site
#     DIR (bundled here; needs this repository and cargo): installs it as
#     /usr/local/lib/unikernel/site.bundle, which the units boot with -initrd,
#     keeping the one it replaces as site.bundle.previous. Without either, an
#     installed bundle stays; on a first install an empty one (the guest then
#     serves the site baked into the image);
#   - restarts, one at a time, the instances that run if their image, bundle or unit
#     changed, waiting up to UNIKERNEL_WAIT seconds for each one's /health;
#   - with --instance NAME=PORT: creates /etc/unikernel/instances/NAME.env and
#     enables and starts unikernel@NAME.service and unikernel-health@NAME.timer;
#     without, the same for the instances already installed, or if there are
#     none, for unikernel.service and unikernel-health.timer with
#     /etc/unikernel/unikernel.env. Existing settings files are kept.
# --rollback   swaps unikernel.elf and site.bundle with their .previous (each
#              that has one) and restarts the running instances one at a time.
# --uninstall  stops and disables every instance and removes the units, the
#              image and the health check. Keeps the settings (/etc/unikernel,
#              drop-ins in /etc/systemd/system/unikernel*.service.d) and the
#              user; --purge removes those too.
# --root DIR   installs under DIR instead of / (for tests and staging). The
#              commands below still act on the running system, so --root
#              requires all of them to be set.
#
# Environment: the commands it runs, to be replaced in tests: SYSTEMCTL
# [systemctl], APT_GET [apt-get], USERADD [useradd], GROUPADD [groupadd],
# USERDEL [userdel]; QEMU [qemu-system-x86_64] and CURL [curl], the programs
# whose absence makes it install a package; UNIKERNEL_WAIT [60], seconds to
# wait for /health after each restart (0: do not wait).
set -euo pipefail

DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

LIB=/usr/local/lib/unikernel
DOC=/usr/local/share/doc/unikernel
UNIT_DIR=/etc/systemd/system
CONF=/etc/unikernel
STATE=/run/unikernel-health
USER_NAME=unikernel
UNITS=(unikernel.service unikernel@.service unikernel-health.service
    unikernel-health.timer unikernel-health@.service unikernel-health@.timer)
DOCS=(README.md Caddyfile tap-networking.conf)

say() { echo "install.sh: $*"; }
die() {
    echo "install.sh: $*" >&2
    exit "${2:-1}"
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

mode=install
image=
bundle=
site=
root=/
purge=0
instances=()
while [ $# -gt 0 ]; do
    case "$1" in
    --image)
        [ $# -ge 2 ] || die "--image needs a file" 2
        image=$2
        shift
        ;;
    --bundle)
        [ $# -ge 2 ] || die "--bundle needs a file" 2
        bundle=$2
        shift
        ;;
    --site)
        [ $# -ge 2 ] || die "--site needs a directory" 2
        site=$2
        shift
        ;;
    --instance)
        [ $# -ge 2 ] || die "--instance needs NAME=PORT" 2
        instances+=("$2")
        shift
        ;;
    --root)
        [ $# -ge 2 ] || die "--root needs a directory" 2
        root=$2
        shift
        ;;
    --rollback) mode=rollback ;;
    --uninstall) mode=uninstall ;;
    --purge) purge=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown argument $1 (see --help)" 2 ;;
    esac
    shift
done

if [ "$purge" = 1 ] && [ "$mode" != uninstall ]; then
    die "--purge goes with --uninstall" 2
fi
if [ "$mode" != install ] && { [ -n "$image$bundle$site" ] || [ ${#instances[@]} -gt 0 ]; }; then
    die "--image, --site, --bundle and --instance go with an install, not --$mode" 2
fi
if [ -n "$bundle" ] && [ -n "$site" ]; then
    die "give --site DIR or --bundle FILE, not both" 2
fi

[ -d "$root" ] || die "--root $root is not a directory" 2
root=$(cd "$root" && pwd)
if [ "$root" = / ]; then
    R=
    [ "$(id -u)" = 0 ] || die "run as root (sudo $0 ...)"
else
    R=$root
    for var in SYSTEMCTL APT_GET USERADD GROUPADD USERDEL; do
        [ -n "${!var:-}" ] || die "--root $root: set $var too (and SYSTEMCTL, APT_GET, USERADD, GROUPADD, USERDEL), or it would act on this system" 2
    done
fi

read -r -a systemctl <<<"${SYSTEMCTL:-systemctl}"
read -r -a apt_get <<<"${APT_GET:-apt-get}"
read -r -a useradd <<<"${USERADD:-useradd}"
read -r -a groupadd <<<"${GROUPADD:-groupadd}"
read -r -a userdel <<<"${USERDEL:-userdel}"
qemu=${QEMU:-qemu-system-x86_64}
curl=${CURL:-curl}
wait_s=${UNIKERNEL_WAIT:-60}
case "$wait_s" in
'' | *[!0-9]*) die "UNIKERNEL_WAIT=$wait_s: expected seconds" 2 ;;
esac

# --- helpers --------------------------------------------------------------

# Instance names that have a settings file, one per line.
installed_instances() {
    local f
    for f in "$R$CONF"/instances/*.env; do
        [ -e "$f" ] || continue
        f=${f##*/}
        echo "${f%.env}"
    done
}

# The value of KEY in the settings file FILE (quotes removed), or empty.
setting() {
    sed -n "s/^$2=\"\{0,1\}\([^\"]*\)\"\{0,1\}[[:space:]]*$/\1/p" "$1" | tail -n 1
}

# The settings file of service unit UNIT.
env_file_of() {
    case "$1" in
    unikernel.service) echo "$R$CONF/unikernel.env" ;;
    unikernel@*.service)
        local name=${1#unikernel@}
        echo "$R$CONF/instances/${name%.service}.env"
        ;;
    esac
}

# install_file SRC DEST MODE: copy (atomically) unless DEST already has SRC's
# bytes and MODE. Status 0 if it copied, 1 if DEST was already right.
install_file() {
    local src=$1 dest=$2 mode=$3
    if [ -f "$dest" ] && cmp -s "$src" "$dest" &&
        [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then
        return 1
    fi
    mkdir -p "$(dirname "$dest")" || die "cannot create $(dirname "$dest")"
    install -m "$mode" "$src" "$dest.tmp.$$" || die "cannot copy $src to $dest"
    mv -f "$dest.tmp.$$" "$dest" || die "cannot replace $dest"
    return 0
}

# Waits until UNIT's /health answers 200, for at most UNIKERNEL_WAIT seconds.
wait_healthy() {
    local unit=$1 env url port host
    [ "$wait_s" -gt 0 ] || return 0
    env=$(env_file_of "$unit")
    url=$(setting "$env" HEALTH_URL)
    if [ -z "$url" ]; then
        port=$(setting "$env" UNIKERNEL_PORT)
        host=$(setting "$env" UNIKERNEL_LISTEN)
        if [ -z "$host" ] || [ "$host" = 0.0.0.0 ]; then
            host=127.0.0.1
        fi
        url=http://$host:$port/health
    fi
    local end=$((SECONDS + wait_s))
    while [ "$SECONDS" -lt "$end" ]; do
        if "$curl" --silent --fail --max-time 2 --output /dev/null "$url"; then
            say "$unit answers $url"
            return 0
        fi
        sleep 1
    done
    return 1
}

# Restarts, one at a time, the running unikernel services; stops at the first
# one that does not come back healthy.
rolling_restart() {
    local units=(unikernel.service) name unit
    while read -r name; do
        units+=("unikernel@$name.service")
    done < <(installed_instances)
    for unit in "${units[@]}"; do
        if "${systemctl[@]}" is-active --quiet "$unit"; then
            say "restarting $unit"
            "${systemctl[@]}" restart "$unit"
            wait_healthy "$unit" ||
                die "$unit did not answer /health within ${wait_s}s; the others were not restarted. See: journalctl -u $unit; roll back with: $0 --rollback"
        fi
    done
}

# --- uninstall ------------------------------------------------------------

if [ "$mode" = uninstall ]; then
    units=(unikernel.service unikernel-health.timer)
    while read -r name; do
        units+=("unikernel@$name.service" "unikernel-health@$name.timer")
    done < <(installed_instances)
    say "stopping and disabling ${units[*]}"
    "${systemctl[@]}" disable --now "${units[@]}" || say "(some units were not loaded)"
    for unit in "${UNITS[@]}"; do
        rm -f "$R$UNIT_DIR/$unit"
    done
    # Empty .wants directories left by `disable`.
    for dir in "$R$UNIT_DIR"/unikernel*.wants; do
        [ -d "$dir" ] && rmdir --ignore-fail-on-non-empty "$dir"
    done
    rm -rf -- "$R$LIB" "$R$DOC" "$R$STATE"
    "${systemctl[@]}" daemon-reload
    if [ "$purge" = 1 ]; then
        # Settings, including drop-ins such as tap-networking.conf.
        rm -rf -- "$R$CONF" "$R$UNIT_DIR"/unikernel.service.d "$R$UNIT_DIR"/unikernel@*.service.d
        if grep -q "^$USER_NAME:" "$R/etc/passwd" 2>/dev/null; then
            "${userdel[@]}" "$USER_NAME"
        fi
        say "removed; settings and the user $USER_NAME too"
    else
        say "removed; kept $CONF and the user $USER_NAME (--uninstall --purge removes them)"
    fi
    exit 0
fi

# --- rollback -------------------------------------------------------------

if [ "$mode" = rollback ]; then
    rolled=0
    for what in unikernel.elf site.bundle; do
        current=$R$LIB/$what
        previous=$current.previous
        [ -f "$previous" ] || continue
        [ -f "$current" ] || die "no current $what ($current)"
        mv -f "$current" "$current.swap.$$"
        mv -f "$previous" "$current"
        mv -f "$current.swap.$$" "$previous"
        say "rolled back: $current is the previous one, the replaced one is $previous"
        rolled=1
    done
    [ "$rolled" = 1 ] || die "no previous image or bundle ($R$LIB/*.previous) to roll back to"
    rolling_restart
    exit 0
fi

# --- install --------------------------------------------------------------

[ -n "$image" ] || image=$DEPLOY/../target/image/release/unikernel.elf
[ -f "$image" ] || die "no image at $image: build it with \`cargo image\`, or pass --image FILE" 2
[ "$(head -c 4 "$image" | od -An -c | tr -d ' ')" = '177ELF' ] ||
    die "$image is not an ELF file" 2

# A bundle starts with the magic UKSITE\r\n (docs/bundle-format.md).
is_bundle() { [ "$(head -c 8 "$1" | od -An -c | tr -d ' ')" = 'UKSITE\r\n' ]; }
if [ -n "$site" ]; then
    [ -d "$site" ] || die "--site $site is not a directory" 2
    command -v cargo >/dev/null 2>&1 && [ -x "$DEPLOY/../scripts/bundle" ] ||
        die "--site needs the bundle builder (this repository's scripts/bundle and cargo); make the bundle elsewhere and pass --bundle FILE" 2
    built_bundle=$(mktemp "${TMPDIR:-/tmp}/unikernel-site.XXXXXX")
    trap 'rm -f "$built_bundle"' EXIT
    "$DEPLOY/../scripts/bundle" "$site" -o "$built_bundle" || die "could not bundle $site" 2
    bundle=$built_bundle
fi
if [ -n "$bundle" ]; then
    [ -f "$bundle" ] || die "no bundle at $bundle" 2
    is_bundle "$bundle" || die "$bundle is not a site bundle (make one with scripts/bundle DIR -o FILE)" 2
fi

for spec in ${instances[@]+"${instances[@]}"}; do
    name=${spec%%=*}
    port=${spec#*=}
    case "$name" in
    '' | *[!A-Za-z0-9_-]*) die "--instance $spec: NAME must be letters, digits, - or _" 2 ;;
    esac
    case "$port" in
    '' | *[!0-9]*) die "--instance $spec: PORT must be a number" 2 ;;
    esac
    # The instance's admin port is PORT + 1000.
    if [ "${#port}" -gt 5 ] || [ "$port" -lt 1 ] || [ "$port" -gt 64535 ]; then
        die "--instance $spec: PORT out of range (1-64535: its admin port is PORT + 1000)" 2
    fi
done

missing=()
command -v "$qemu" >/dev/null 2>&1 || missing+=(qemu-system-x86)
command -v "$curl" >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    "${apt_get[@]}" update
    DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y --no-install-recommends "${missing[@]}"
fi

if ! grep -q '^kvm:' "$R/etc/group" 2>/dev/null; then
    say "creating the group kvm"
    "${groupadd[@]}" --system kvm
fi
if ! grep -q "^$USER_NAME:" "$R/etc/passwd" 2>/dev/null; then
    say "creating the user $USER_NAME"
    "${useradd[@]}" --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --comment "unikernel service" "$USER_NAME"
fi

restart=0
# replace SRC DEST WHAT: install SRC as DEST; a different DEST is kept as
# DEST.previous (for --rollback) and the running instances are restarted.
replace() {
    local src=$1 dest=$2 what=$3
    if [ -f "$dest" ] && ! cmp -s "$src" "$dest"; then
        install -m 0644 "$dest" "$dest.previous"
        say "kept the replaced $what as $dest.previous"
        restart=1
    fi
    if install_file "$src" "$dest" 0644; then
        say "installed the $what $dest"
    fi
}
replace "$image" "$R$LIB/unikernel.elf" image
site_bundle=$R$LIB/site.bundle
if [ -n "$bundle" ]; then
    replace "$bundle" "$site_bundle" "site bundle"
elif [ ! -e "$site_bundle" ]; then
    install -m 0644 /dev/null "$site_bundle"
    say "no site bundle given: the guests serve the site baked into the image"
fi
install_file "$DEPLOY/unikernel-health" "$R$LIB/unikernel-health" 0755 || true
for doc in "${DOCS[@]}"; do
    install_file "$DEPLOY/$doc" "$R$DOC/$doc" 0644 || true
done

reload=0
for unit in "${UNITS[@]}"; do
    existed=0
    [ -e "$R$UNIT_DIR/$unit" ] && existed=1
    if install_file "$DEPLOY/$unit" "$R$UNIT_DIR/$unit" 0644; then
        say "installed $UNIT_DIR/$unit"
        reload=1
        [ "$existed" = 0 ] || restart=1
    fi
done

install_file "$DEPLOY/unikernel.env" "$R$DOC/unikernel.env.dist" 0644 || true

# What to enable: the instances named, else the instances already installed
# (an upgrade), else the single service.
names=()
for spec in ${instances[@]+"${instances[@]}"}; do
    name=${spec%%=*}
    port=${spec#*=}
    env=$R$CONF/instances/$name.env
    if [ -e "$env" ]; then
        say "kept $CONF/instances/$name.env (UNIKERNEL_PORT=$(setting "$env" UNIKERNEL_PORT))"
    else
        mkdir -p "$R$CONF/instances"
        # Each instance its own admin port (its site port + 1000, on
        # 127.0.0.1 only) and access log.
        admin_port=$((port + 1000))
        sed -e "s/^UNIKERNEL_PORT=.*/UNIKERNEL_PORT=\"$port\"/" \
            -e "s/^UNIKERNEL_ADMIN_PORT=.*/UNIKERNEL_ADMIN_PORT=\"$admin_port\"/" \
            -e "s|^UNIKERNEL_ACCESS_LOG=.*|UNIKERNEL_ACCESS_LOG=\"/var/log/unikernel/$name-access.log\"|" \
            "$DEPLOY/unikernel.env" >"$env.tmp.$$"
        chmod 0644 "$env.tmp.$$"
        mv -f "$env.tmp.$$" "$env"
        say "created $CONF/instances/$name.env (UNIKERNEL_PORT=$port, UNIKERNEL_ADMIN_PORT=$admin_port)"
    fi
    names+=("$name")
done
if [ ${#names[@]} -eq 0 ]; then
    while read -r name; do
        names+=("$name")
    done < <(installed_instances)
fi
enable=()
for name in ${names[@]+"${names[@]}"}; do
    enable+=("unikernel@$name.service" "unikernel-health@$name.timer")
done
if [ ${#enable[@]} -eq 0 ]; then
    if [ ! -e "$R$CONF/unikernel.env" ]; then
        install -D -m 0644 "$DEPLOY/unikernel.env" "$R$CONF/unikernel.env"
        say "created $CONF/unikernel.env"
    elif ! cmp -s "$DEPLOY/unikernel.env" "$R$CONF/unikernel.env"; then
        say "kept your $CONF/unikernel.env (the shipped one is $DOC/unikernel.env.dist)"
    fi
    enable=(unikernel.service unikernel-health.timer)
fi

if [ "$reload" = 1 ]; then
    "${systemctl[@]}" daemon-reload
fi
if [ "$restart" = 1 ]; then
    rolling_restart
fi
"${systemctl[@]}" enable --now "${enable[@]}"

say "done. Status: systemctl status ${enable[0]}; logs: journalctl -u ${enable[0]} -f"
