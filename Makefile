# cimid: build, run and test.
#
#   make run     prepare the host (libvirt, QEMU), build, run cimid in the foreground
#   make test    prepare the host, then run every unit and integration test
#   make install install cimid, cimi, the systemd unit, the default config and the cimid group
#                (DESTDIR=... PREFIX=... for packaging; see README "Installing")

GO        ?= go
STATE_DIR ?= /var/lib/cimid
SOCKET    ?= /run/cimid/cimid.sock
CIMID_FLAGS ?=
# Integration tests share one libvirtd (and one of them restarts it), so
# packages are tested one after another.
TEST_FLAGS ?= -count=1 -p 1 -timeout 50m

# Installation paths. DESTDIR stages a package; with DESTDIR set, make
# install neither creates the group nor reloads systemd.
PREFIX    ?= /usr/local
BINDIR    ?= $(PREFIX)/bin
UNITDIR   ?= $(PREFIX)/lib/systemd/system
DOCDIR    ?= $(PREFIX)/share/doc/cimid
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
CONFDIR   ?= /etc/cimid
DESTDIR   ?=

.PHONY: all build run test test-unit vet host-setup test-tools bench clean install uninstall

all: build

build:
	$(GO) build -o bin/cimid ./cmd/cimid
	$(GO) build -o bin/cimi ./cmd/cimi

host-setup:
	bash systemd/host-setup.sh

run: host-setup build
	exec bin/cimid --state-dir $(STATE_DIR) --socket $(SOCKET) $(CIMID_FLAGS)

vet:
	$(GO) vet ./...
	$(GO) vet -tags testhooks ./...

# Tools only the tests use: systemd-analyze checks the unit file
# (TestUnitVerify), and Python with PyYAML runs cloud-init's own merging
# code over the user-data we write (TestCloudInitMergesCredential). Get them
# when the packages can be installed; say so when they cannot.
TEST_PACKAGES = systemd python3 python3-yaml
test-tools:
	@missing=$$(for p in $(TEST_PACKAGES); do dpkg-query -W -f='$${db:Status-Status}\n' $$p 2>/dev/null | grep -q '^installed$$' || echo $$p; done); \
	[ -z "$$missing" ] || \
		apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1; } || \
		echo "warning: cannot install $$missing; the tests that need them will fail" >&2

test: host-setup test-tools vet
	$(GO) test $(TEST_FLAGS) ./...

# Only the tests that need neither libvirt nor root.
test-unit:
	$(GO) test -count=1 -short ./agent/... ./store/... ./cmd/cimi/...

# The crash matrix in full: the agent is killed before and after every
# step of every operation, restarted, and checked against libvirt and its
# state directory (TestCrashMatrix; make test runs two failpoints per
# operation). One line per case at the end: operation, failpoint, outcome.
.PHONY: test-crash
test-crash: host-setup
	CIMID_CRASH_FULL=1 $(GO) test -count=1 -v -run '^TestCrashMatrix$$' -timeout 90m ./cmd/cimid/

# Machine operations through the API against the same work done directly
# on libvirt and qemu-img: one "bench: ..." line per operation.
bench: host-setup
	@echo "running the benchmarks (about five minutes)..." >&2
	@log=$$(mktemp); \
	if $(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 15m ./cmd/cimid/ >$$log 2>&1; then \
		grep '^bench: ' $$log; rc=$$?; \
	else \
		cat $$log; rc=1; \
	fi; \
	rm -f $$log; exit $$rc

# The load generator (TestLoad) for longer than in make test: concurrent
# clients against a real daemon, then one "load: ..." line per request class
# (p50/p99 latency) and for throughput, Jobs and RSS. LOAD_CLIENTS and
# LOAD_DURATION size the run.
LOAD_CLIENTS  ?= 8
LOAD_DURATION ?= 3m
.PHONY: load
load: host-setup
	@log=$$(mktemp); \
	if CIMID_LOAD_CLIENTS=$(LOAD_CLIENTS) CIMID_LOAD_DURATION=$(LOAD_DURATION) \
		$(GO) test -v -count=1 -run '^TestLoad$$' -timeout 30m ./cmd/cimid/ >$$log 2>&1; then \
		grep '^load: ' $$log; rc=$$?; \
	else \
		cat $$log; rc=1; \
	fi; \
	rm -f $$log; exit $$rc

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR) $(DESTDIR)$(BASHCOMPDIR)
	install -m 0755 bin/cimid bin/cimi $(DESTDIR)$(BINDIR)/
	sed -e 's#/usr/local/bin/cimid#$(BINDIR)/cimid#' -e 's#/usr/local/share/doc/cimid#$(DOCDIR)#' \
		-e 's#/etc/cimid/cimid.conf#$(CONFDIR)/cimid.conf#' systemd/cimid.service >$(DESTDIR)$(UNITDIR)/cimid.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/cimid.service
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	bin/cimi completion bash >$(DESTDIR)$(BASHCOMPDIR)/cimi
	install -d -m 0755 $(DESTDIR)$(CONFDIR)
	@if [ -e $(DESTDIR)$(CONFDIR)/cimid.conf ]; then \
		echo "keeping existing $(DESTDIR)$(CONFDIR)/cimid.conf (the default is in systemd/cimid.conf)"; \
	else \
		install -m 0644 systemd/cimid.conf $(DESTDIR)$(CONFDIR)/cimid.conf; \
	fi
	@if [ -z "$(DESTDIR)" ]; then \
		getent group cimid >/dev/null || groupadd --system cimid; \
		if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
		echo "installed; start with: systemctl enable --now cimid"; \
	fi

# Removes what install put in place, but not the configuration, the state
# directory (guests and images) or the cimid group.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/cimid $(DESTDIR)$(BINDIR)/cimi $(DESTDIR)$(UNITDIR)/cimid.service \
		$(DESTDIR)$(BASHCOMPDIR)/cimi
	rm -rf $(DESTDIR)$(DOCDIR)
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "kept $(CONFDIR), /var/lib/cimid and the cimid group; remove them by hand if you want them gone"

clean:
	rm -rf bin
