# famfs-rs: entry points. Every target does its own set-up (scripts/setup is idempotent).
#   make            build user space and famfs.ko (building the kernel first when needed)
#   make check      build, then host tests and bounded fuzzing beside the VM tests (scripts/check);
#                   ends with `N passed, N failed`
#   make demo       boot the CXL VM and show famfs working
#   make vm         an interactive shell in the CXL VM
#   make bench      the benchmark suite (figures in bench-results/, Documentation/performance.md)
#   make fuzz       every fuzz target for 10 minutes
#   make check-debug  the module suites under the debug kernel (KASAN, lockdep, kmemleak)
#   make check-distro famfs.ko built by DKMS for Debian's stock 7.3 kernel, tested in a VM running it
#   make kernel     build (or reuse) the cached Rust-enabled 7.3 kernel
#   make clean      remove build outputs of this checkout (not the cached kernel)
#   make install    install the built tools, man pages, mount.famfs, famfs@.service (PREFIX, DESTDIR;
#                   INSTALL_FLAGS=--dkms adds the DKMS tree); builds nothing: run `make` first
#   make install-dkms   install only the DKMS source tree /usr/src/famfs-VERSION

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
FUZZ_SECONDS ?= 20

.PHONY: all setup kernel module module-debug userspace check check-debug check-host check-fuzz check-vm check-distro demo vm bench fuzz clean install install-dkms

all: module userspace

setup:
	@scripts/setup

kernel: setup
	@scripts/build-kernel >/dev/null

module: kernel
	@scripts/build-module

module-debug: setup
	@scripts/build-module --debug

userspace: setup
	$(CARGO) build --release --manifest-path userspace/Cargo.toml --workspace
	@# Cargo cannot name a binary mkfs.famfs: famfs acts as mkfs under that name.
	@ln -sf famfs userspace/target/release/mkfs.famfs

# The host checks run beside the VM tests (scripts/check; FAMFS_CHECK_SERIAL=1 for one after the
# other, as `make all check-host check-fuzz check-vm` does).
check:
	scripts/check

check-host: setup
	@# The module's sources (and the fmap crate it compiles) follow the kernel's rustfmt rules.
	rustfmt --check --edition 2021 --config-path kernel/.rustfmt.toml kernel/famfs_main.rs kernel/fmap/src/lib.rs kernel/fmap/tests/*.rs
	@# rustfmt leaves the bodies of brace macros (proptest!) alone: the 100 columns are checked apart.
	@find kernel -name '*.rs' -not -path '*/target/*' | xargs awk 'length > 100 { print FILENAME ":" FNR ": " length " columns, over 100"; n++ } END { exit n > 0 }'
	@# User space follows userspace/rustfmt.toml (100 columns) and has no clippy warning.
	cd userspace && $(CARGO) fmt --all --check && $(CARGO) fmt --manifest-path fuzz/Cargo.toml --check
	$(CARGO) clippy --manifest-path userspace/Cargo.toml --workspace --all-targets -- -D warnings
	$(CARGO) test --manifest-path kernel/fmap/Cargo.toml
	$(CARGO) test --manifest-path userspace/Cargo.toml --workspace

check-fuzz: setup
	scripts/fuzz --seconds $(FUZZ_SECONDS)

check-vm: all
	scripts/check-vm

# famfs.ko for Debian's own kernel: DKMS in a Debian 13 root against linux-headers, the Rust metadata
# rebuilt once (famfs-rust-meta), then one boot of Debian's kernel image (scripts/check-distro).
check-distro: userspace
	scripts/check-distro

# The module suites under a KASAN/lockdep/kmemleak kernel (a second, ~30 minute kernel build
# when cold): a longer target of its own.
check-debug: all module-debug
	scripts/check-vm-debug

fuzz: setup
	scripts/fuzz --seconds 600

bench: all
	scripts/bench

demo: all
	scripts/vm -- scripts/demo

vm: all
	scripts/vm

# No dependency on the build: `make install` runs as root after `make`, on a machine (or in a VM)
# that may not be able to build.
PREFIX ?= /usr/local
DESTDIR ?=
INSTALL_FLAGS ?=
install:
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" scripts/install $(INSTALL_FLAGS)

install-dkms:
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" scripts/install --dkms-only

clean:
	-scripts/build-module clean
	$(CARGO) clean --manifest-path userspace/Cargo.toml
	$(CARGO) clean --manifest-path kernel/fmap/Cargo.toml
	rm -rf .vm-out
