#!/usr/bin/env bash
# build.sh - build the cimid test guest from Debian packages: the Debian cloud kernel, a busybox
# initramfs, and two small disks that boot them with SYSLINUX. The guest acts as a tiny cloud-init:
# it reads a NoCloud seed (a volume labelled cidata, e.g. the CD-ROM cimid attaches on IDE) and
# runs the shell scripts of its user data.
#
# Usage: hypervisor/testguest/build.sh OUTDIR
#
# Writes into OUTDIR (created if needed):
#   vmlinuz               kernel from the linux-image-*-cloud-amd64 package (extracted, not installed)
#   initrd.img            gzip'd cpio: busybox-static, a few kernel modules (virtio, the PIIX IDE
#                         controller, CD-ROM and ISO 9660 among them), and /init
#   disk.qcow2            64 MiB FAT disk without partition table, SYSLINUX boot sector, booting
#                         vmlinuz + initrd.img with "console=ttyS0 quiet"
#   disk-poweroff.qcow2   the same, with "tg.after=poweroff tg.delay=8" added: the guest powers
#                         itself off 8 s after READY
#   build.stamp           the inputs of the last build; a run with the same inputs does nothing
# A concurrent run waits on a lock in the cache directory. Outputs are replaced atomically, so
# domains that still use the previous files are not disturbed. The same inputs give the same
# bytes (timestamps come from SOURCE_DATE_EPOCH).
#
# Environment:
#   CIMID_TESTGUEST_CACHE       where the kernel package is kept (default /var/cache/cimid-testguest)
#   CIMID_TESTGUEST_KERNEL_PKG  kernel package to use (default: the linux-image-*-cloud-amd64
#                               that linux-image-cloud-amd64 depends on, resolved once and
#                               remembered in the cache; delete CACHE/kernel-package to follow
#                               a newer kernel)
#
# The guest reports on its serial console (ttyS0), one line per event:
#   TESTGUEST: BOOTED <uptime>          /init runs and its modules are loaded
#   TESTGUEST: DISKS <dev>... | none    block devices at boot (a seed CD-ROM shows as sr0)
#   TESTGUEST: SIZE <dev> <bytes>       size of each disk at boot, when added, and when it changes
#   TESTGUEST: SEED <file>... | none    the files of the cidata volume, mounted read-only on
#                                       /run/seed; none when there is no such volume (the seed is
#                                       read, and its scripts run, at every boot)
#   TESTGUEST: USER-DATA [mime] <type>... | none | gzip-unreadable
#                                       what the seed's user-data holds (gunzipped first if gzip'd):
#                                       "mime" and the type of each part of a MIME document, else
#                                       the one type of the whole, each type from the part's
#                                       Content-Type or else from its first line as cloud-init
#                                       tells it (#! text/x-shellscript, #cloud-config
#                                       text/cloud-config, ...; text/plain when unknown)
#   TESTGUEST: SSH-KEYS <n>             entries of ssh_authorized_keys lists (block style) in the
#                                       text/cloud-config parts, wherever they are
#   TESTGUEST: SCRIPT-START <part>      a text/x-shellscript part (numbered from 1) starts, once
#                                       every NIC of the boot has its lease or gave up; the
#                                       scripts run one after the other, in the background, with
#                                       their output on the console (print "TESTGUEST: ..." lines
#                                       to be seen by tests); base64 parts are decoded
#   TESTGUEST: SCRIPT-EXIT <part> <status>
#                                       the script ended with that exit status
#   TESTGUEST: READY                    the ACPI power button is handled from now on
#   TESTGUEST: ACPI-POWEROFF            the power button was pressed; the guest powers off at once
#   TESTGUEST: DISK-ADDED <dev>         a block device appeared (checked twice a second)
#   TESTGUEST: DISK-REMOVED <dev>       a block device went away
#   TESTGUEST: NET <if> <addr>/<len>    a DHCP lease was configured on a NIC (in the background)
#   TESTGUEST: NET <if> none            no lease for that NIC within ~30 s
#   TESTGUEST: NIC-ADDED <if>           a network interface appeared after boot (then DHCP runs)
#   TESTGUEST: NIC-REMOVED <if>         a network interface went away
#   TESTGUEST: SELF-POWEROFF | SELF-REBOOT | SELF-PANIC
#                                       the action asked for on the kernel command line
#   TESTGUEST: MODULE-FAILED <name>     a kernel module did not load
#   TESTGUEST: WARNING <text>           something the tests will probably trip over
# Kernel command line options read by /init:
#   tg.after=poweroff|reboot|panic      what to do by itself after READY (default: nothing)
#   tg.delay=N                          seconds to wait before doing it (default 0)
# The domain XML needs <features><acpi/></features> for the power button, and >= 128 MiB.
set -Eeuo pipefail

PROG=testguest-build
say() { echo "$PROG: $*" >&2; }
die() { echo "$PROG: error: $*" >&2; exit 1; }
trap 'echo "$PROG: error: command failed (status $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

if [ $# -ne 1 ] || [ -z "$1" ] || [[ "$1" == -* ]]; then
  die "usage: $0 OUTDIR"
fi
OUT=$1

export LC_ALL=C DEBIAN_FRONTEND=noninteractive
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
umask 022

CACHE=${CIMID_TESTGUEST_CACHE:-/var/cache/cimid-testguest}
mkdir -p "$CACHE" "$OUT"
OUT=$(cd "$OUT" && pwd)
SCRIPT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")

exec 9>>"$CACHE/build.lock"
if ! flock -n 9; then
  say "waiting for another build (lock $CACHE/build.lock)"
  flock -w 1200 9 || die "timed out waiting for $CACHE/build.lock"
fi

# ------------------------------------------------------------------------------ packages
TOOLS=(busybox-static cpio syslinux syslinux-common mtools dosfstools qemu-utils)

# Prints "package=version" for each installed package among "$@".
installed_versions() {
  dpkg-query -W -f='${db:Status-Status} ${Package}=${Version}\n' "$@" 2>/dev/null \
    | sed -n 's/^installed //p' || true
}

apt_log=""
WORK=""
cleanup() {
  [ -z "$apt_log" ] || rm -f "$apt_log"
  [ -z "$WORK" ] || rm -rf "$WORK"
}
trap cleanup EXIT

apt_update() {
  apt-get update -q >>"$apt_log" 2>&1 || { tail -n 20 "$apt_log" >&2; die "apt-get update failed"; }
}
apt_lists_present() { compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; }

versions=$(installed_versions "${TOOLS[@]}")
missing=()
for p in "${TOOLS[@]}"; do
  grep -q "^$p=" <<<"$versions" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]}: run as root, or install them first"
  say "installing ${missing[*]}"
  apt_log=$(mktemp /tmp/cimid-testguest-apt.XXXXXX)
  apt_install() {
    apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" >>"$apt_log" 2>&1
  }
  apt_lists_present || apt_update
  if ! apt_install; then
    apt_update
    apt_install || { tail -n 30 "$apt_log" >&2; die "apt-get install ${missing[*]} failed"; }
  fi
  versions=$(installed_versions "${TOOLS[@]}")
fi

# ------------------------------------------------------------------------------ kernel package
DEB_DIR=$CACHE/debs
mkdir -p "$DEB_DIR"

resolve_kernel_pkg() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null \
    | sed -n -E 's/^[[:space:]]*Depends: (linux-image-[0-9][^[:space:]]*-cloud-amd64)$/\1/p' | head -n 1 || true
}

kernel_pkg=${CIMID_TESTGUEST_KERNEL_PKG:-}
if [ -z "$kernel_pkg" ] && [ -s "$CACHE/kernel-package" ]; then
  kernel_pkg=$(<"$CACHE/kernel-package")
fi
if [ -z "$kernel_pkg" ]; then
  apt_log=${apt_log:-$(mktemp /tmp/cimid-testguest-apt.XXXXXX)}
  apt_lists_present || apt_update
  kernel_pkg=$(resolve_kernel_pkg)
  if [ -z "$kernel_pkg" ]; then
    apt_update
    kernel_pkg=$(resolve_kernel_pkg)
  fi
  [ -n "$kernel_pkg" ] || die "cannot tell which kernel linux-image-cloud-amd64 depends on"
  echo "$kernel_pkg" >"$CACHE/kernel-package"
fi

newest_deb() {
  local f best=""
  for f in "$DEB_DIR/${kernel_pkg}"_*.deb; do
    [ -f "$f" ] || continue
    if [ -z "$best" ] || dpkg --compare-versions "$(deb_version "$f")" gt "$(deb_version "$best")"; then
      best=$f
    fi
  done
  echo "$best"
}
deb_version() { local b=${1##*/}; b=${b#*_}; echo "${b%_*}"; }

deb=$(newest_deb)
if [ -z "$deb" ]; then
  say "downloading $kernel_pkg into $DEB_DIR"
  apt_log=${apt_log:-$(mktemp /tmp/cimid-testguest-apt.XXXXXX)}
  dl=$(mktemp -d "$DEB_DIR/download.XXXXXX")
  download() {
    (cd "$dl" && apt-get download -q -o APT::Sandbox::User=root "$kernel_pkg") >>"$apt_log" 2>&1
  }
  if ! download; then
    apt_update
    if [ -z "${CIMID_TESTGUEST_KERNEL_PKG:-}" ]; then
      # the remembered package may have left the archive with a kernel ABI bump
      kernel_pkg=$(resolve_kernel_pkg)
      [ -n "$kernel_pkg" ] || die "cannot tell which kernel linux-image-cloud-amd64 depends on"
      echo "$kernel_pkg" >"$CACHE/kernel-package"
    fi
    download || { tail -n 20 "$apt_log" >&2; rm -rf "$dl"; die "apt-get download $kernel_pkg failed"; }
  fi
  mv "$dl"/*.deb "$DEB_DIR"/
  rmdir "$dl"
  deb=$(newest_deb)
  [ -n "$deb" ] || die "downloaded $kernel_pkg but found no .deb in $DEB_DIR"
fi
# ------------------------------------------------------------------------------ up to date?
OUTPUTS=(vmlinuz initrd.img disk.qcow2 disk-poweroff.qcow2)
stamp=$(
  echo "script $(sha256sum <"$SCRIPT" | cut -d' ' -f1)"
  echo "kernel ${deb##*/}"
  echo "epoch $SOURCE_DATE_EPOCH"
  echo "$versions"
)

# QEMU runs as an unprivileged user; it must reach the images through every parent directory.
check_qemu_access() {
  local user
  for user in libvirt-qemu qemu; do
    id "$user" >/dev/null 2>&1 && break
    user=""
  done
  [ -n "$user" ] && [ "$(id -u)" = 0 ] || return 0
  runuser -u "$user" -- test -r "$OUT/disk.qcow2" \
    || die "user $user cannot read $OUT/disk.qcow2: every directory above it must be traversable (o+x)"
}

up_to_date=1
[ -f "$OUT/build.stamp" ] && [ "$(<"$OUT/build.stamp")" = "$stamp" ] || up_to_date=0
for f in "${OUTPUTS[@]}"; do [ -s "$OUT/$f" ] || up_to_date=0; done
if [ "$up_to_date" = 1 ]; then
  check_qemu_access
  say "up to date in $OUT"
  exit 0
fi

# ------------------------------------------------------------------------------ build
say "building in $OUT from ${deb##*/}"
WORK=$(mktemp -d /tmp/cimid-testguest.XXXXXX)

mkdir -p "$WORK/pkg"
dpkg-deb --fsys-tarfile "$deb" \
  | tar -x -C "$WORK/pkg" --wildcards './boot/vmlinuz-*' './lib/modules/*.ko'
kernel=$(find "$WORK/pkg/boot" -name 'vmlinuz-*' | head -n 1)
[ -n "$kernel" ] || die "no kernel image in ${deb##*/}"

# Modules /init loads; their dependencies are added in load order.
WANT_MODULES=(virtio_pci virtio_blk virtio_net virtio_scsi sd_mod virtio_balloon
              button evdev pvpanic_mmio pvpanic_pci
              ata_piix sr_mod cdrom isofs)
declare -A module_path=() module_seen=()
module_order=()
while IFS= read -r path; do
  name=${path##*/}; name=${name%.ko}
  module_path[${name//-/_}]=$path
done < <(find "$WORK/pkg/lib/modules" -name '*.ko')

add_module() {
  local name=$1 path deps dep
  [ -z "${module_seen[$name]:-}" ] || return 0
  module_seen[$name]=1
  path=${module_path[$name]:-}
  [ -n "$path" ] || return 0   # built into the kernel
  deps=$(tr '\0' '\n' <"$path" | sed -n 's/^depends=//p' | head -n 1)
  for dep in ${deps//,/ }; do add_module "${dep//-/_}"; done
  module_order+=("$name")
}
for m in "${WANT_MODULES[@]}"; do add_module "$m"; done

ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,dev,proc,sys,run,tmp,var/log,lib/modules,etc/acpi,etc/testguest}
cp /bin/busybox "$ROOT/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$ROOT/bin/$applet"
done
for m in "${module_order[@]}"; do
  cp "${module_path[$m]}" "$ROOT/lib/modules/$m.ko"
done
printf '%s\n' "${module_order[@]}" >"$ROOT/etc/testguest/modules"
if [ "$(id -u)" = 0 ]; then
  mknod -m 600 "$ROOT/dev/console" c 5 1
  mknod -m 666 "$ROOT/dev/null" c 1 3
fi

cat >"$ROOT/init" <<'INIT'
#!/bin/sh
# PID 1 of the cimid test guest: reports what happens as "TESTGUEST: ..." lines on the console.
PATH=/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

tg() { echo "TESTGUEST: $*"; }

while read -r m; do
  insmod "/lib/modules/$m.ko" 2>/dev/null || tg "MODULE-FAILED $m"
done </etc/testguest/modules
read -r up _ </proc/uptime
tg "BOOTED ${up}s"

# Block devices: CUR_DISKS holds the current list, SIZE_<dev> the last size reported.
scan_disks() {
  CUR_DISKS=""
  for d in /sys/block/*; do
    d=${d##*/}
    case "$d" in '*'|loop*|ram*|zram*) continue ;; esac
    CUR_DISKS="$CUR_DISKS $d"
  done
  CUR_DISKS=${CUR_DISKS# }
}
report_size() {
  read -r sectors <"/sys/block/$1/size" 2>/dev/null || return 0
  bytes=$((sectors * 512))
  last=""
  eval "last=\${SIZE_$1:-}"
  if [ "$last" != "$bytes" ]; then
    eval "SIZE_$1=$bytes"
    tg "SIZE $1 $bytes"
  fi
}
scan_disks
tg "DISKS ${CUR_DISKS:-none}"
for d in $CUR_DISKS; do report_size "$d"; done

# cloud-init NoCloud seed: a volume labelled cidata, mounted read-only on /run/seed. Its user-data
# is read as cloud-init reads it, in part: gzip'd or not, a MIME document split into its parts, each
# part typed by its Content-Type or else by its first line. Scripts run later (see below);
# ssh_authorized_keys entries of the cloud-config parts are counted.
mkdir -p /run/seed /run/testguest
SCRIPTS=""
# kind_of FILE: the content type cloud-init gives FILE by its first line.
kind_of() {
  case "$(awk 'NF { sub(/^[ \t]+/, ""); print tolower($0); exit }' "$1")" in
    '#cloud-config-archive'*) echo text/cloud-config-archive ;;
    '#cloud-config'*) echo text/cloud-config ;;
    '#include'*) echo text/x-include-url ;;
    '#cloud-boothook'*) echo text/cloud-boothook ;;
    '#!'*) echo text/x-shellscript ;;
    *) echo text/plain ;;
  esac
}
read_user_data() {
  ud=$1 dir=/run/testguest/parts
  rm -rf "$dir"
  mkdir -p "$dir"
  if [ "$(head -c 2 "$ud" | od -An -tx1 | tr -d ' \n')" = 1f8b ]; then
    zcat "$ud" >/run/testguest/user-data 2>/dev/null || { tg "USER-DATA gzip-unreadable"; return 0; }
    ud=/run/testguest/user-data
  fi
  mime=""
  if head -c 4096 "$ud" | grep -qi '^mime-version:'; then
    mime="mime "
    awk -v dir="$dir" -f /etc/testguest/mime.awk "$ud"
  else
    : >"$dir/1.type"
    : >"$dir/1.enc"
    cp "$ud" "$dir/1.body"
  fi
  types="" keys=0 k=1
  while [ -e "$dir/$k.type" ]; do
    p=$dir/$k
    read -r t <"$p.type" || t=""
    read -r e <"$p.enc" || e=""
    touch "$p.body"
    case "$e" in
      base64) base64 -d "$p.body" >"$p.data" 2>/dev/null || : ;;
      *) cp "$p.body" "$p.data" ;;
    esac
    case "$t" in ''|text/plain|text/x-not-multipart) t=$(kind_of "$p.data") ;; esac
    types="$types $t"
    case "$t" in
      text/x-shellscript) SCRIPTS="$SCRIPTS $p.data" ;;
      text/cloud-config) keys=$((keys + $(awk -f /etc/testguest/keys.awk "$p.data"))) ;;
    esac
    k=$((k + 1))
  done
  tg "USER-DATA $mime${types# }"
  tg "SSH-KEYS $keys"
}
seed_dev=$(findfs LABEL=cidata 2>/dev/null)
if [ -n "$seed_dev" ] && mount -o ro "$seed_dev" /run/seed 2>/dev/null; then
  tg "SEED $(cd /run/seed && echo *)"
  if [ -s /run/seed/user-data ]; then read_user_data /run/seed/user-data; else tg "USER-DATA none"; fi
else
  tg "SEED none"
fi

# ACPI power button: the button driver adds an input device named "Power Button"; busybox acpid
# reads it and runs /etc/acpi/power-button (see /etc/acpid.conf) on KEY_POWER.
button=""
i=0
while [ -z "$button" ] && [ $i -lt 50 ]; do
  for e in /sys/class/input/event*; do
    read -r name <"$e/device/name" 2>/dev/null || continue
    if [ "$name" = "Power Button" ]; then button=/dev/input/${e##*/}; fi
  done
  [ -n "$button" ] || { sleep 0.1; i=$((i + 1)); }
done
if [ -n "$button" ]; then
  acpid -f -c /etc/acpi -a /etc/acpid.conf -l /var/log/acpid.log &
  acpid_pid=$!
  # READY only once acpid has the device open, so that no button press gets lost.
  i=0
  while [ $i -lt 50 ]; do
    for fd in "/proc/$acpid_pid"/fd/*; do
      [ "$(readlink "$fd")" = "$button" ] && break 2
    done
    sleep 0.1
    i=$((i + 1))
  done
else
  tg "WARNING no ACPI power button (does the domain have <features><acpi/></features>?)"
fi

ip link set lo up
# dhcp IF: one DHCP lease for IF, then IF's mark in /run/testguest, lease or not.
dhcp() {
  ip link set "$1" up
  udhcpc -f -q -n -i "$1" -t 15 -T 2 -s /etc/testguest/udhcpc >/dev/null 2>&1 || tg "NET $1 none"
  : >"/run/testguest/dhcp-$1.done"
}
scan_nics() {
  CUR_NICS=""
  for n in /sys/class/net/*; do
    n=${n##*/}
    case "$n" in '*'|lo) continue ;; esac
    CUR_NICS="$CUR_NICS $n"
  done
  CUR_NICS=${CUR_NICS# }
}
scan_nics
for n in $CUR_NICS; do dhcp "$n" & done

# The scripts of the user data run in order once every NIC of the boot has its lease (or gave up).
if [ -n "$SCRIPTS" ]; then
  (
    for n in $CUR_NICS; do
      i=0
      while [ ! -e "/run/testguest/dhcp-$n.done" ] && [ $i -lt 900 ]; do sleep 0.1; i=$((i + 1)); done
    done
    for s in $SCRIPTS; do
      k=${s##*/}; k=${k%.data}
      chmod 755 "$s"
      tg "SCRIPT-START $k"
      "$s" </dev/null
      tg "SCRIPT-EXIT $k $?"
    done
  ) &
fi

after=""
delay=0
read -r cmdline </proc/cmdline
for opt in $cmdline; do
  case "$opt" in
    tg.after=*) after=${opt#tg.after=} ;;
    tg.delay=*) delay=${opt#tg.delay=} ;;
  esac
done

tg "READY"

case "$after" in
  poweroff) (sleep "$delay"; tg "SELF-POWEROFF"; sync; poweroff -f) & ;;
  reboot) (sleep "$delay"; tg "SELF-REBOOT"; sync; reboot -f) & ;;
  panic) (sleep "$delay"; tg "SELF-PANIC"; echo 1 >/proc/sys/kernel/sysrq; echo c >/proc/sysrq-trigger) & ;;
  "") ;;
  *) tg "WARNING unknown tg.after=$after" ;;
esac

# Watch for hotplugged or resized disks and for new NICs. PID 1 never returns.
old_disks=$CUR_DISKS
old_nics=$CUR_NICS
while :; do
  sleep 0.5
  scan_disks
  if [ "$CUR_DISKS" != "$old_disks" ]; then
    for d in $CUR_DISKS; do
      case " $old_disks " in *" $d "*) ;; *) tg "DISK-ADDED $d" ;; esac
    done
    for d in $old_disks; do
      case " $CUR_DISKS " in *" $d "*) ;; *) tg "DISK-REMOVED $d"; eval "SIZE_$d=" ;; esac
    done
    old_disks=$CUR_DISKS
  fi
  for d in $CUR_DISKS; do report_size "$d"; done
  scan_nics
  if [ "$CUR_NICS" != "$old_nics" ]; then
    for n in $CUR_NICS; do
      case " $old_nics " in *" $n "*) ;; *) tg "NIC-ADDED $n"; dhcp "$n" & ;; esac
    done
    for n in $old_nics; do
      case " $CUR_NICS " in *" $n "*) ;; *) tg "NIC-REMOVED $n" ;; esac
    done
    old_nics=$CUR_NICS
  fi
done
INIT

echo "PWRF power-button" >"$ROOT/etc/acpid.conf"
cat >"$ROOT/etc/acpi/power-button" <<'EOF'
#!/bin/sh
echo "TESTGUEST: ACPI-POWEROFF" >/dev/console
sync
poweroff -f
EOF
cat >"$ROOT/etc/testguest/udhcpc" <<'EOF'
#!/bin/sh
# udhcpc event script: configure the lease and report it on the console.
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ;;
  bound|renew)
    len=${mask:-$(ipcalc -p "$ip" "$subnet" | sed 's/^PREFIX=//')}
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$len" dev "$interface"
    for r in $router; do ip route add default via "$r" dev "$interface" 2>/dev/null; break; done
    echo "TESTGUEST: NET $interface $ip/$len" >/dev/console
    ;;
esac
exit 0
EOF
cat >"$ROOT/etc/testguest/mime.awk" <<'EOF'
# mime.awk: split a MIME document into the files DIR/N.type (media type, lower case), DIR/N.enc
# (transfer encoding) and DIR/N.body (the body as sent), N counting the parts from 1. A document
# that is not multipart is one part.
function boundary(ct,   i, v) {
  i = index(tolower(ct), "boundary=")
  if (!i) return ""
  v = substr(ct, i + 9)
  if (substr(v, 1, 1) == "\"") { v = substr(v, 2); sub(/".*/, "", v) } else sub(/[; \t].*/, "", v)
  return v
}
function media(ct) { ct = tolower(ct); sub(/;.*/, "", ct); gsub(/[ \t]/, "", ct); return ct }
function header(line,   name, v) {
  if (line ~ /^[ \t]/) { if (last != "") h[last] = h[last] " " line; return }
  name = tolower(line); sub(/:.*/, "", name); gsub(/[ \t]/, "", name)
  v = line; sub(/^[^:]*:[ \t]*/, "", v)
  h[name] = v; last = name
}
function start_body() {
  print media(h["content-type"]) > (dir "/" n ".type"); close(dir "/" n ".type")
  print tolower(h["content-transfer-encoding"]) > (dir "/" n ".enc"); close(dir "/" n ".enc")
  printf "" > (dir "/" n ".body")
  state = "body"; lines = 0
}
BEGIN { state = "top"; n = 0 }
{ sub(/\r$/, "") }
state == "top" {
  if ($0 != "") { header($0); next }
  b = boundary(h["content-type"])
  if (media(h["content-type"]) ~ /^multipart\// && b != "") { state = "preamble"; next }
  n = 1; start_body(); next
}
state == "head" {
  if ($0 != "") { header($0); next }
  start_body(); next
}
state == "preamble" || state == "body" {
  if (b != "" && $0 == "--" b "--") { state = "end"; next }
  if (b != "" && $0 == "--" b) { n++; split("", h); last = ""; state = "head"; next }
  # the line end before a delimiter belongs to the delimiter
  if (state == "body") { printf "%s%s", (lines++ ? "\n" : ""), $0 > (dir "/" n ".body") }
}
END { if (state == "body" && lines) printf "\n" > (dir "/" n ".body") }
EOF
cat >"$ROOT/etc/testguest/keys.awk" <<'EOF'
# keys.awk: print how many entries the ssh_authorized_keys lists of a cloud-config hold (block
# style, one key a line), wherever they are: at the top or in a user's entry.
{
  match($0, /^ */); ind = RLENGTH
  if (inkeys) {
    if ($0 ~ /^[ \t]*(#.*)?$/) next
    if ($0 ~ /^ *- / && ind >= keyind) { n++; next }
    inkeys = 0
  }
  line = $0; sub(/^ *(- +)?/, "", line)
  if (line ~ /^ssh_authorized_keys: *$/) { match($0, /^ *(- +)?/); keyind = RLENGTH; inkeys = 1 }
}
END { print n + 0 }
EOF
chmod 755 "$ROOT/init" "$ROOT/etc/acpi/power-button" "$ROOT/etc/testguest/udhcpc"

find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
(cd "$ROOT" && find . -mindepth 1 | sort | cpio --quiet -o -H newc -R 0:0 --reproducible) \
  | gzip -9 -n >"$WORK/initrd.img"
cp "$kernel" "$WORK/vmlinuz"

# Boot disk: FAT16 filesystem over the whole disk; SYSLINUX's boot sector is sector 0.
make_disk() {  # make_disk RAW_IMAGE "KERNEL ARGS"
  local img=$1 args=$2 files=$WORK/files-${1##*/}
  mkdir -p "$files"
  mkfs.fat -C -n CIMIDTG -i 7e57b007 --invariant "$img" 65536 >/dev/null
  syslinux --install "$img"
  cat >"$files/syslinux.cfg" <<EOF
DEFAULT testguest
PROMPT 0
TIMEOUT 0
LABEL testguest
  KERNEL vmlinuz
  INITRD initrd.img
  APPEND $args
EOF
  cp "$WORK/vmlinuz" "$WORK/initrd.img" "$files/"
  touch -d "@$SOURCE_DATE_EPOCH" "$files"/*
  MTOOLS_SKIP_CHECK=1 mcopy -m -i "$img" "$files/syslinux.cfg" "$files/vmlinuz" "$files/initrd.img" ::/
}
CMDLINE="console=ttyS0 quiet"
make_disk "$WORK/disk.raw" "$CMDLINE"
make_disk "$WORK/disk-poweroff.raw" "$CMDLINE tg.after=poweroff tg.delay=8"
for d in disk disk-poweroff; do
  qemu-img convert -q -f raw -O qcow2 "$WORK/$d.raw" "$WORK/$d.qcow2"
done

rm -f "$OUT/build.stamp"
for f in "${OUTPUTS[@]}"; do
  install -m 0644 "$WORK/$f" "$OUT/.$f.new"
  mv -f "$OUT/.$f.new" "$OUT/$f"
done
chmod 0755 "$OUT"
echo "$stamp" >"$OUT/build.stamp"
check_qemu_access
say "built $OUT (kernel ${kernel##*/vmlinuz-}, modules: ${module_order[*]})"
