#!/usr/bin/env bash
# Verify and benchmark a bundle on CPUs this machine is not: AVX2-only x86 and ARM64, under qemu-user.
#
#   scripts/emulate.sh BUNDLE LABELLED_TEXTS [--targets host,avx2,arm64] [--limit 300] [--out DIR] [--name NAME]
#                      [--record]
#   scripts/emulate.sh BUNDLE --verify-only [--targets ...] [--record]
#   scripts/emulate.sh --setup-only [--targets avx2,arm64]
#   scripts/emulate.sh --exec TARGET PYTHON_ARGS...   (the target's Python, e.g. -m edgetune_runtime.graph_outputs)
#
# For each target it runs `edgetune-runtime verify BUNDLE` and `edgetune-runtime bench BUNDLE --data
# LABELLED_TEXTS --limit N --spread` under the emulator (`host`: natively, for comparison) and writes
# OUT/<name>_<target>.json (default OUT: benchmarks/results/emulated), the usual bench result whose `device`
# names the emulated CPU and carries `emulated`, and OUT/<name>_<target>_verify.json (the golden check); then
# `edgetune report` merges them into OUT/<name>_report/. --verify-only skips the bench and the report.
# With --record, a bundle directory whose golden examples pass on every target gets them added to its manifest's
# `verified_targets` (re-sealed; edgetune.bundle.targets), so `verify` stops warning there.
# Latency under emulation is not the target's (TCG translates every instruction): read only accuracy and
# the golden check (the report keeps emulated runs off its latency plot).
#
# Targets:
#   avx2   qemu-x86_64 -cpu Haswell: AVX2 and FMA, no AVX-512, no VNNI (the host's Python runs translated).
#   arm64  qemu-aarch64 -cpu neoverse-n1: ARMv8.2 with dot-product (Graviton2, Ampere, Cortex-A76 phones/Pi 5).
#          Not `-cpu max`: with it every int8 model tried returns near-uniform garbage while fp32 is right
#          (`max,sve=off` or `max,sme=off` is right again), whether the emulator's or onnxruntime's SVE/SME
#          int8 path is at fault is not known from here; neoverse-n1 has neither, like most devices shipped.
#
# Set up from nothing on first use, cached under ${EDGETUNE_EMULATE_CACHE:-~/.cache/edgetune/emulate} (a second
# run only runs): Debian's qemu-user (apt-get, needs root), an ARM64 Python 3.11 sysroot unpacked from Debian's
# arm64 packages (dpkg --add-architecture arm64; apt-get download; dpkg -x), and for each target the runtime's
# dependencies as PyPI wheels for that platform (pins below). The runtime package itself is this checkout's
# runtime/ (on PYTHONPATH), so a run tests the code you have. onnxruntime reads /proc/cpuinfo at import and
# crashes on the host's x86 text under qemu-aarch64, so each run sees a cpuinfo describing the emulated CPU,
# bind-mounted over /proc/cpuinfo in a private mount namespace (`unshare -m`, needs root).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
# The host's Python, with the toolchain installed: runs the host's bench, the report and --record.
PYTHON="${PYTHON:-$([ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python3)}"
CACHE="${EDGETUNE_EMULATE_CACHE:-$HOME/.cache/edgetune/emulate}"
# Emulation is CPU-heavy: run it at niceness 10, not 10 more than a caller already niced (19 starves under load).
NICE=$(( $(nice) < 10 ? 10 - $(nice) : 0 ))
# The runtime's dependencies, pinned to the versions the toolchain's suite runs (pyproject.toml) so a
# difference seen under emulation is the CPU's, not a library's.
WHEELS=(onnxruntime==1.31.1 numpy==2.4.6 tokenizers==0.22.2 click==8.5.1)
# Debian bookworm's arm64 Python 3.11 and the libraries it and the wheels load.
ARM64_DEBS=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libexpat1 zlib1g libffi8 libssl3
            libbz2-1.0 liblzma5 libstdc++6 libgcc-s1 libsqlite3-0 libuuid1 libncursesw6 libtinfo6 libreadline8
            libgomp1 libdb5.3 libnsl2 libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libcom-err2
            libkrb5support0 libkeyutils1 libcrypt1 libzstd1)

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
fail() { echo "error: $*" >&2; exit 2; }

TARGETS="host,avx2,arm64"; LIMIT=300; OUT="$REPO/benchmarks/results/emulated"; NAME=""; SETUP_ONLY=0; RECORD=0; VERIFY_ONLY=0; EXEC_ARGS=(); POSITIONAL=()
while [ $# -gt 0 ]; do
  case "$1" in
    --targets) TARGETS="$2"; shift 2 ;;
    --limit) LIMIT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --name) NAME="$2"; shift 2 ;;
    --setup-only) SETUP_ONLY=1; shift ;;
    --record) RECORD=1; shift ;;
    --verify-only) VERIFY_ONLY=1; shift ;;
    --exec) [ $# -ge 3 ] || usage; TARGETS="$2"; shift 2; EXEC_ARGS=("$@"); break ;;
    -h|--help) usage ;;
    -*) fail "unknown option $1 (see --help)" ;;
    *) POSITIONAL+=("$1"); shift ;;
  esac
done
if [ "$SETUP_ONLY" = 0 ] && [ "${#EXEC_ARGS[@]}" = 0 ] && [ "${#POSITIONAL[@]}" -ne $((2 - VERIFY_ONLY)) ]; then
  usage
fi
[ "$(uname -m)" = x86_64 ] || fail "the emulated targets are set up from an x86_64 Linux host; this is $(uname -m)"
[ "$(id -u)" = 0 ] || fail "run as root: qemu-user comes from apt-get and the cpuinfo bind mount needs unshare -m"

# --- set-up (idempotent: every step is skipped once its result is in the cache) ---------------------------

ensure_qemu() {
  command -v qemu-x86_64 >/dev/null && command -v qemu-aarch64 >/dev/null && return
  echo "installing Debian's qemu-user" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null
}

ensure_arm64_sysroot() {
  local sysroot="$CACHE/arm64/sysroot"
  [ -x "$sysroot/usr/bin/python3.11" ] && return
  echo "unpacking an ARM64 Python 3.11 sysroot from Debian's arm64 packages into $sysroot" >&2
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
  fi
  apt-get update -qq
  local debs="$CACHE/arm64/debs" staging="$CACHE/arm64/sysroot.partial"
  rm -rf "$debs" "$staging" && mkdir -p "$debs" "$staging"
  (cd "$debs" && apt-get download -qq "${ARM64_DEBS[@]/%/:arm64}")
  for deb in "$debs"/*.deb; do dpkg -x "$deb" "$staging"; done
  mv "$staging" "$sysroot"  # whole or absent: an interrupted unpack is redone, never half-used
  rm -rf "$debs"
}

ensure_wheels() {  # $1: target, $2: machine (x86_64, aarch64), $3: python version (major.minor)
  local site="$CACHE/$1/site-packages"
  [ -f "$site/.complete" ] && return
  echo "fetching ${WHEELS[*]} for $2 (Python $3) into $site" >&2
  rm -rf "$site.partial"
  # Every manylinux level up to the sysroot's glibc (2.36): pip does not widen one --platform to older ones.
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform "manylinux_2_28_$2" --platform "manylinux_2_27_$2" --platform "manylinux_2_17_$2" \
    --platform "manylinux2014_$2" --python-version "$3" --implementation cp --target "$site.partial" "${WHEELS[@]}"
  touch "$site.partial/.complete" && rm -rf "$site" && mv "$site.partial" "$site"
}

# /proc/cpuinfo as each emulated CPU would show it: onnxruntime's ARM feature detection reads it, and the
# bench's device description reads the model and flags from it.
write_cpuinfo() {  # $1: target
  local path="$CACHE/$1/cpuinfo"
  case "$1" in
    avx2) cat >"$path" <<'EOF'
processor	: 0
vendor_id	: GenuineIntel
model name	: Intel Core Processor (Haswell), emulated by qemu-x86_64 -cpu Haswell
flags		: fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt avx avx2 fma f16c bmi1 bmi2 movbe
EOF
    ;;
    arm64) cat >"$path" <<'EOF'
processor	: 0
model name	: ARM Neoverse-N1, emulated by qemu-aarch64 -cpu neoverse-n1
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x3
CPU part	: 0xd0c
CPU revision	: 1
EOF
    ;;
  esac
}

setup_target() {  # $1: target
  [ "$1" = host ] && return  # this machine, natively: the accuracy the emulated targets are compared with
  mkdir -p "$CACHE/$1"
  case "$1" in
    avx2) ensure_wheels avx2 x86_64 "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')" ;;
    arm64) ensure_arm64_sysroot; ensure_wheels arm64 aarch64 3.11 ;;
    *) fail "--targets: unknown target '$1'; choose from host, avx2, arm64" ;;
  esac
  write_cpuinfo "$1"
}

# The target's Python under its emulator, seeing the emulated CPU's cpuinfo.
run_python() {  # $1: target, then the interpreter's arguments
  local target="$1"; shift
  if [ "$target" = host ]; then
    PYTHONPATH="$REPO/runtime" nice -n "$NICE" "$PYTHON" "$@"
    return
  fi
  local emulator python
  case "$target" in
    # The interpreter's own binary (qemu runs ELF files, not a pyenv or venv wrapper script).
    avx2) emulator=(qemu-x86_64 -cpu Haswell); python="$(python3 -c 'import sys; print(sys.executable)')"
          python="$(readlink -f "$python")"; environment=() ;;
    arm64) emulator=(qemu-aarch64 -cpu neoverse-n1); python="$CACHE/arm64/sysroot/usr/bin/python3.11"
           environment=(QEMU_LD_PREFIX="$CACHE/arm64/sysroot" PYTHONHOME="$CACHE/arm64/sysroot/usr") ;;
  esac
  # EDGETUNE_EMULATED is what the bench's device description records as `emulated` (device.py).
  env "${environment[@]}" EDGETUNE_EMULATED="${emulator[*]}" PYTHONNOUSERSITE=1 \
    PYTHONPATH="$REPO/runtime:$CACHE/$target/site-packages" \
    unshare -m sh -c 'mount --bind "$0" /proc/cpuinfo && exec "$@"' "$CACHE/$target/cpuinfo" \
      nice -n "$NICE" "${emulator[@]}" "$python" "$@" \
      2> >(grep -v "TCG doesn't support requested feature" >&2)  # Haswell features TCG lacks (TSX, ...): noise
}

run_on() { local target="$1"; shift; run_python "$target" -m edgetune_runtime.cli "$@"; }  # edgetune-runtime

ensure_qemu
IFS=, read -r -a TARGET_LIST <<<"$TARGETS"
for target in "${TARGET_LIST[@]}"; do setup_target "$target"; done
if [ "${#EXEC_ARGS[@]}" -gt 0 ]; then
  [ "${#TARGET_LIST[@]}" = 1 ] || fail "--exec takes one target"
  run_python "$TARGETS" "${EXEC_ARGS[@]}"
  exit $?
fi
[ "$SETUP_ONLY" = 1 ] && { echo "emulated targets ready: ${TARGET_LIST[*]} (cache: $CACHE)"; exit 0; }

BUNDLE="${POSITIONAL[0]}"; DATA="${POSITIONAL[1]:-}"
[ -e "$BUNDLE" ] || fail "$BUNDLE: no such bundle"
[ "$VERIFY_ONLY" = 1 ] || [ -f "$DATA" ] || fail "$DATA: no such labelled-texts file"
NAME="${NAME:-$(basename "${BUNDLE%.zip}")}"
mkdir -p "$OUT"
status=0
for target in "${TARGET_LIST[@]}"; do
  echo "== $target: verify" >&2
  if ! run_on "$target" verify "$BUNDLE" -o "$OUT/${NAME}_${target}_verify.json"; then
    echo "== $target: golden examples FAILED (the bench still runs, to measure accuracy there)" >&2
    status=1
  fi
  [ "$VERIFY_ONLY" = 1 ] && continue
  echo "== $target: bench on $LIMIT texts spread over $DATA (latency under emulation is not the target's)" >&2
  # One thread, batch 1 and 32, no cold starts: under TCG only the predictions are worth the wait.
  run_on "$target" bench "$BUNDLE" --data "$DATA" --limit "$LIMIT" --spread --threads 1 --batch-sizes 1,32 \
    --warmup 2 --cold-starts 0 --name "$NAME" -o "$OUT/${NAME}_${target}.json"
done
if [ "$VERIFY_ONLY" = 0 ]; then
  RESULTS=()
  for target in "${TARGET_LIST[@]}"; do RESULTS+=("$OUT/${NAME}_${target}.json"); done
  echo "== report: accuracy per target → $OUT/${NAME}_report/" >&2
  PYTHONPATH="$REPO/toolchain:$REPO/runtime" "$PYTHON" -m edgetune report "${RESULTS[@]}" -o "$OUT/${NAME}_report" \
    --title "$NAME on each CPU target" --force
fi
if [ "$RECORD" = 1 ]; then
  [ "$status" = 0 ] || fail "not recording targets: the golden examples failed on at least one of them"
  recorded=()
  for target in "${TARGET_LIST[@]}"; do [ "$target" = host ] || recorded+=("$target"); done
  PYTHONPATH="$REPO/toolchain:$REPO/runtime" "$PYTHON" -m edgetune.bundle.targets "$BUNDLE" "${recorded[@]}"
fi
exit $status
