# Sourced by scripts/test: install the Debian packages the tests drive, when missing and possible.
# Program -> package. Tests that need a missing program are skipped (or fail under PRIVPROXY_REQUIRE_TOOLS=1).
declare -A PRIVPROXY_TOOLS=([promtool]=prometheus [prometheus]=prometheus [goaccess]=goaccess [chromium]=chromium [haproxy]=haproxy [nginx]=nginx [wrk]=wrk [curl]=curl [php]=php-cli [node]=nodejs [pebble]=pebble [pebble-challtestsrv]=pebble
  [podman]=podman [runc]=runc [mmdebstrap]=mmdebstrap [newuidmap]=uidmap [valgrind]=valgrind)

install_tools() {
  local missing=() prog pkg
  for prog in "${!PRIVPROXY_TOOLS[@]}"; do
    command -v "$prog" >/dev/null 2>&1 || missing+=("${PRIVPROXY_TOOLS[$prog]}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; else sudo="none"; fi
  fi
  if [ "$sudo" = "none" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "privproxy: some tests need: ${missing[*]} (Debian packages); install them with" >&2
    echo "  sudo apt-get install ${missing[*]}" >&2
    echo "  until then those tests are skipped" >&2
    return 0
  fi
  echo "privproxy: installing Debian packages the tests drive: ${missing[*]}" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
install_tools
