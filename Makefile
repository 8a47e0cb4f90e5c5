# minirt and emu: set-up, tests, images and benchmarks.
#
#   make install   system packages (Debian, as root) + the Python package in .venv
#                  + the test VM's kernel
#   make test      the whole test suite
#   make test-vm   the privileged tests again, in a VM: Debian stable's kernel, cgroup v2 only
#   make images    the example images under images/
#   make bench     the benchmarks, side by side with real peers (not tests)
#   make fuzz      emu's fuzz tests, 100 times longer than in make test, fresh randomness
#   make conformance  runc's own integration tests against runc and minirt's OCI
#                  runtime (fetched from Debian at run time; not part of make test)

PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
APT_PKGS := libcap-dev busybox-static iproute2 util-linux kmod zstd \
            runc crun skopeo umoci debootstrap nftables gcc slirp4netns docker-registry \
            qemu-utils podman buildah docker.io containerd \
            docker-compose podman-compose catatonit bash-builtins

.PHONY: install system-packages venv test test-vm vm-kernel images bench fuzz conformance clean

install: system-packages venv images vm-kernel

system-packages:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PKGS); \
	else \
	    echo "make install: not root or no apt-get; install these yourself: $(APT_PKGS)"; \
	fi

venv:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --config-settings editable_mode=compat -e '.[test,bench]'
	$(PY) minirt/kernel/_libc_build.py

test:
	$(PY) -m pytest -q

# EMU_FUZZ=N runs N times the examples of make test, unseeded (a failure
# prints the seed that reproduces it).
EMU_FUZZ ?= 100
fuzz:
	EMU_FUZZ=$(EMU_FUZZ) $(PY) -m pytest -q tests/emu/test_robustness.py tests/emu/test_qcow2.py -k fuzz

# The test VM's kernel (tests/vm/kernel.py): fetched with apt-get download into
# .cache/vm, never installed; qemu-system-x86 boots it.
VM_PKGS  := qemu-system-x86
APT_PKGS += $(VM_PKGS)

vm-kernel:
	$(PYTHON) tests/vm/kernel.py

test-vm: vm-kernel
	$(PY) tests/vm/boot.py

images:
	$(PY) images/build.py images/

# runc's bats suite from Debian's runc source package (kept in .cache/conformance).
conformance: images
	$(PY) tests/conformance/runc_suite.py

bench:
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build dist *.egg-info images/*.tar images/*.img
