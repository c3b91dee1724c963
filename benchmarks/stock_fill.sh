#!/bin/bash
# The emulated verification fill three ways, side by side in one aarch64 container
# (docs/emulation.md, "The verification requirement fill under QEMU"). From the repo root:
#   docker run --rm --platform linux/arm64 -v ~/.cache/orch/native:/orch/native:ro -v $PWD:/b:ro \
#     -v /etc/ssl/certs/ca-certificates.crt:/etc/orch/host-ca-bundle.crt:ro \
#     -e SSL_CERT_FILE=/etc/orch/host-ca-bundle.crt -e PIP_CERT=/etc/orch/host-ca-bundle.crt \
#     -e UV=/orch/native/uv-<version>/uv orch-stock/debian-trixie_aarch64:<tag> \
#     bash /b/benchmarks/stock_fill.sh C B A
# A: ensurepip + pip wheel (before); B: pip by the native uv + pip wheel;
# C: uv pip compile (pylock.toml) + pylockfetch (after). Print `uptime` with the figures.
U=${UV:?the native uv\'s path in the container}
REQS="cffi pytest"
t() { local s=$(date +%s%N); "$@"; local rc=$?; echo "  [$(( ($(date +%s%N) - s)/1000000 )) ms rc=$rc] $*" >&2; return $rc; }
fresh() { rm -rf /orch/venv /w /tmp/uvc; mkdir -p /w; $U venv -q --python 3.13 --python-preference only-system --no-python-downloads --no-config --cache-dir /tmp/uvc /orch/venv; }
for v in "$@"; do
  fresh; S=$(date +%s%N); export PATH=/orch/venv/bin:$PATH
  case $v in
  A) t python -m ensurepip >/dev/null; t python -m pip wheel -q --no-cache-dir --disable-pip-version-check --wheel-dir /w $REQS ;;
  B) t $U pip install -q --python /orch/venv/bin/python --cache-dir /tmp/uvc pip; t python -m pip wheel -q --no-cache-dir --disable-pip-version-check --wheel-dir /w $REQS ;;
  C) printf '%s\n' $REQS > /tmp/req.in; mkdir -p /tmp/pl; t $U pip compile -q --format pylock.toml --python /orch/venv/bin/python --no-config --cache-dir /tmp/uvc /tmp/req.in -o /tmp/pl/pylock.toml; t python /b/orchestrator/pipeline/pylockfetch.py /tmp/pl/pylock.toml /w ;;
  esac
  echo "$v total $(( ($(date +%s%N) - S)/1000000 )) ms; wheels: $(ls /w | tr '\n' ' ')"
done
