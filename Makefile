# Espresso: userspace IPsec gateway on DPDK.
# `make demo` and `make test` set up a fresh Debian 12 machine (as root)
# themselves: they install the Debian packages and build what they need.

SHELL := /bin/bash
CARGO ?= cargo

# Every Debian package the project, its tests, demo and benchmarks use.
DEB_PACKAGES := build-essential pkg-config clang libclang-dev \
	libdpdk-dev dpdk dpdk-dev libipsec-mb-dev libpcap-dev \
	iproute2 iputils-ping ethtool iperf3 tshark tcpdump python3 python3-scapy python3-cryptography \
	strongswan-charon strongswan-swanctl libcharon-extra-plugins \
	libstrongswan-standard-plugins libstrongswan-extra-plugins openssl \
	fonts-dejavu-core prometheus mmdebstrap systemd groff-base

.PHONY: all deps build install uninstall test test-portable fuzz fuzz-long lint doc msrv secgw bench demo compose-demo clean

all: build

# Idempotent: installs only what is missing, and runs `apt-get update` only
# then. tshark asks a debconf question; pre-answer it.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "Debian packages: all present"; fi
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }

build: deps
	$(CARGO) build --release --workspace
	$(CARGO) run -q --release -p espresso-control --example gen-docs -- $(DOCS_DIR) >/dev/null

# `make install` (as root, after `make build` as anyone: it rebuilds
# nothing that is up to date) puts the gateway, its systemd unit, man
# pages, shell completions and an example configuration under PREFIX
# (and SYSCONFDIR), below DESTDIR for packaging. The man pages and
# completions are generated from the command line's definition by
# control/examples/gen-docs.rs during `make build`. The example is
# installed as espresso.toml.example only: a gateway must never start on
# the public keys of an example, so espresso.toml is the operator's to
# write (the unit will not start without it). `make uninstall` removes
# what install put there and leaves espresso.toml.
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
DESTDIR ?=
BINDIR := $(PREFIX)/bin
MANDIR := $(PREFIX)/share/man
# In systemd's search path for local units (systemd.unit(5)), next to the
# /usr/local binary it starts.
UNITDIR := $(PREFIX)/lib/systemd/system
BASHCOMPDIR := $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR := $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR := $(PREFIX)/share/fish/vendor_completions.d
ESPRESSO_BIN ?= target/release/espresso
DOCS_DIR ?= target/release/docs

install: build
	@test -x "$(ESPRESSO_BIN)" || { echo "$(ESPRESSO_BIN) is missing: make build" >&2; exit 1; }
	@test -f "$(DOCS_DIR)/man1/espresso.1" || { echo "$(DOCS_DIR) has no man pages: make build" >&2; exit 1; }
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	[ -d $(DESTDIR)$(SYSCONFDIR)/espresso ] || install -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/espresso
	install -m 0755 $(ESPRESSO_BIN) $(DESTDIR)$(BINDIR)/espresso
	sed -e 's|/usr/local/bin/espresso|$(BINDIR)/espresso|g' -e 's|/etc/espresso/|$(SYSCONFDIR)/espresso/|g' \
		control/systemd/espresso.service > $(DESTDIR)$(UNITDIR)/espresso.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/espresso.service
	install -m 0644 $(DOCS_DIR)/man1/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(DOCS_DIR)/completions/espresso.bash $(DESTDIR)$(BASHCOMPDIR)/espresso
	install -m 0644 $(DOCS_DIR)/completions/_espresso $(DESTDIR)$(ZSHCOMPDIR)/_espresso
	install -m 0644 $(DOCS_DIR)/completions/espresso.fish $(DESTDIR)$(FISHCOMPDIR)/espresso.fish
	install -m 0644 examples/site-a.toml $(DESTDIR)$(SYSCONFDIR)/espresso/espresso.toml.example
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed; write $(SYSCONFDIR)/espresso/espresso.toml (see espresso.toml.example), then: systemctl enable --now espresso"

uninstall:
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl disable --now espresso 2>/dev/null || true; fi
	rm -f $(DESTDIR)$(BINDIR)/espresso $(DESTDIR)$(UNITDIR)/espresso.service \
		$(DESTDIR)$(MANDIR)/man1/espresso.1 $(DESTDIR)$(MANDIR)/man1/espresso-*.1 \
		$(DESTDIR)$(BASHCOMPDIR)/espresso $(DESTDIR)$(ZSHCOMPDIR)/_espresso \
		$(DESTDIR)$(FISHCOMPDIR)/espresso.fish $(DESTDIR)$(SYSCONFDIR)/espresso/espresso.toml.example
	-rmdir $(DESTDIR)$(SYSCONFDIR)/espresso 2>/dev/null
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# Everything, as root with every Debian package: ESPRESSO_TEST_FULL makes
# a test whose prerequisite is missing fail instead of skipping
# (dataplane/testkit).
test: deps secgw
	ESPRESSO_TEST_FULL=1 $(CARGO) test --workspace --profile ci && ./scripts/fuzz.sh 60

# The tier any machine with Rust passes, with no root, DPDK, ipsec-mb,
# scapy or strongSwan: the FFI crates build empty and the tests that need
# more print "skipped: <reason>". Its own target directory, so it does not
# rebuild the full build's DPDK bindings.
test-portable:
	ESPRESSO_WITHOUT_DPDK=1 ESPRESSO_WITHOUT_IPSEC_MB=1 CARGO_TARGET_DIR=target/portable \
		$(CARGO) test --workspace --profile ci

# Every fuzz target in fuzz/ for its share of 60 s (cargo-fuzz on stable
# through RUSTC_BOOTSTRAP; see the script).
fuzz: deps
	./scripts/fuzz.sh 60

# Every fuzz target for FUZZ_SECONDS each (default an hour), e.g.
# `make fuzz-long FUZZ_SECONDS=600`; FUZZ_TARGETS picks some.
FUZZ_SECONDS ?= 3600
fuzz-long: deps
	FUZZ_PER_TARGET=$(FUZZ_SECONDS) ./scripts/fuzz.sh

# Formatting, then clippy with warnings denied on every target (the
# workspace lints in Cargo.toml, and `incompatible_msrv` against the
# declared rust-version). The ci profile shares its build scripts' output
# (bindgen, aws-lc) with `make test`. Without DPDK installed the code behind
# `have_dpdk` is not linted: CI runs `make deps` first.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --profile ci -- -D warnings

# The API documentation of every crate, warnings (broken links) denied.
doc:
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --profile ci

# No dependency in Cargo.lock needs a newer Rust than the declared
# rust-version (see the script).
msrv:
	./scripts/check-msrv.sh

# The ESP engine summary (esp_report: against the bare crypto and DPDK's
# dpdk-test-crypto-perf, ~2 min; BENCH_ARGS go to it, e.g.
# BENCH_ARGS=--quick), the criterion benches only with BENCH_CRITERION=1
# (~4 min more), the IKE signature cost per IKE SA (the ike_auth bench,
# ~1 min: the certificate path against bare aws-lc-rs sign + verify,
# ratios in bench-results/ike_auth.md), then the lab: `espresso-lab bench` on the standard matrix,
# every case next to testpmd and DPDK's ipsec-secgw (make secgw) on the
# same traffic (~10 min on 2 cores, more with secgw),
# SA installs while forwarding with 100,000 tunnels, then the latency and
# zero-loss lab over net_memif (~1.5 min), then Espresso against strongSwan
# (kernel-libipsec) through the two-site namespace topology
# (scripts/vs-strongswan.sh, ~1 min). LAB_ARGS go to it, e.g.
# LAB_ARGS=--quick (which skips the comparison), --no-latency or
# --no-strongswan. It ends with the tables and writes
# bench-results/latest.json, latest.md and the PNG plots.
BENCH_CRITERION ?= 0
bench: deps secgw
	$(CARGO) run --release -p espresso-benches --bin esp_report -- $(BENCH_ARGS)
	if [ "$(BENCH_CRITERION)" = 1 ]; then $(CARGO) bench -p espresso-benches; fi
	$(CARGO) bench -p espresso-benches --bench ike_auth -- --warm-up-time 1 --measurement-time 4
	/usr/bin/python3 scripts/ike_auth_summary.py target/criterion/ike-auth bench-results/ike_auth.md || true
	$(CARGO) build --release -p espresso-control -p espresso-lab
	./target/release/espresso-lab bench --out bench-results $(LAB_ARGS)

# DPDK's ipsec-secgw example, the lab's reference gateway: fetched as the
# source package of the installed libdpdk-dev (a private apt sources list:
# /etc/apt is not changed), patched to not require RX checksum offload
# (the software PMDs have none), built and cached in
# target/ipsec-secgw-<version>/; rebuilt only when missing or when DPDK's
# version changed.
secgw: deps
	./scripts/build-secgw.sh

demo: build
	./scripts/two-site.sh demo

# The two-site demo as containers (docker/): builds the images (the base
# ones from Debian's packages when missing, then docker/Dockerfile, which
# compiles espresso in its build stage), brings docker/compose.yaml up,
# waits for the IKE SA, pings hostA -> hostB through the tunnel, checks
# the WAN carries ESP, prints a summary and removes the lab, also on
# failure. ESPRESSO_BIN=target/release/espresso packages that binary
# instead of compiling in the image.
compose-demo:
	./docker/lab.sh

clean:
	$(CARGO) clean
