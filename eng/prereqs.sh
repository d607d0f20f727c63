#!/usr/bin/env bash
# Makes TorchSharp's native library loadable on this machine.
# TorchSharp 0.107's libLibTorchSharp.so needs libstdc++ with GLIBCXX_3.4.32 (GCC 13+).
# Debian 12 ships only up to 3.4.30, so there we install libstdc++6 from Debian 13 (trixie), pinned low
# so nothing else is upgraded by default. Elsewhere we only report what is missing.
# Idempotent: a quick no-op when the symbol version is already present.
set -euo pipefail

need=GLIBCXX_3.4.32

find_libstdcxx() {
  for p in /lib/x86_64-linux-gnu/libstdc++.so.6 /usr/lib/x86_64-linux-gnu/libstdc++.so.6 \
           /lib/aarch64-linux-gnu/libstdc++.so.6 /usr/lib64/libstdc++.so.6 /usr/lib/libstdc++.so.6; do
    [ -e "$p" ] && { echo "$p"; return 0; }
  done
  ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 /{print $NF; exit}'
}

has_symbol() {
  local lib; lib=$(find_libstdcxx)
  [ -n "$lib" ] && grep -aq "$need" "$lib"
}

if [ "$(uname -s)" != "Linux" ]; then
  echo "prereqs: not Linux; TorchSharp's native packages bring what they need. Nothing to do."
  exit 0
fi

if has_symbol; then
  echo "prereqs: libstdc++ already provides $need. Nothing to do."
  exit 0
fi

. /etc/os-release 2>/dev/null || true
if [ "${ID:-}" = "debian" ] && [ "${VERSION_ID:-}" = "12" ]; then
  if [ "$(id -u)" != "0" ]; then
    SUDO=sudo
    command -v sudo >/dev/null || { echo "prereqs: need root (or sudo) to install libstdc++6 from Debian 13." >&2; exit 1; }
  else
    SUDO=
  fi
  echo "prereqs: Debian 12 lacks $need; installing libstdc++6 from Debian 13 (trixie), pinned at low priority."
  echo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main' \
    | $SUDO tee /etc/apt/sources.list.d/trixie.list >/dev/null
  printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' | $SUDO tee /etc/apt/preferences.d/trixie-pin >/dev/null
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t trixie --no-install-recommends libstdc++6 >/dev/null
  if has_symbol; then
    echo "prereqs: installed; libstdc++ now provides $need."
    exit 0
  fi
  echo "prereqs: installation finished but $need is still missing." >&2
  exit 1
fi

cat >&2 <<MSG
prereqs: this system's libstdc++ lacks $need, which TorchSharp 0.107 needs (GCC 13 or newer).
  Ubuntu 24.04+, Debian 13+ and Fedora 39+ ship it. On older systems install a newer libstdc++6
  (e.g. from your distribution's backports or the ubuntu-toolchain-r PPA) and run this script again.
MSG
exit 1
