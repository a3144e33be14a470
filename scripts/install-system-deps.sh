#!/usr/bin/env bash
# Debian/Ubuntu libraries that open3d needs: libusb to import, Vulkan + Mesa for offscreen rendering.
# With --test also Debian's chromium (large), which the tests use to open the HTML report headless.
# Skips what is already installed; does nothing on other systems.
set -euo pipefail
command -v dpkg-query >/dev/null || exit 0
packages=(libusb-1.0-0 libvulkan1 mesa-vulkan-drivers)
for arg in "$@"; do
  case "$arg" in
    --test) packages+=(chromium) ;;
    *) echo "usage: $0 [--test]" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
