# cimid: build, run and test.
#
#   make run     prepare the host (libvirt, QEMU), build, run cimid in the foreground
#   make test    prepare the host, then run every unit and integration test

GO        ?= go
STATE_DIR ?= /var/lib/cimid
SOCKET    ?= /run/cimid/cimid.sock
CIMID_FLAGS ?=
# Integration tests share one libvirtd (and one of them restarts it), so
# packages are tested one after another.
TEST_FLAGS ?= -count=1 -p 1 -timeout 50m

.PHONY: all build run test test-unit vet host-setup bench clean

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

test: host-setup vet
	$(GO) test $(TEST_FLAGS) ./...

# Only the tests that need neither libvirt nor root.
test-unit:
	$(GO) test -count=1 -short ./agent/... ./store/... ./cmd/cimi/...

# Machine operations through the API against the same work done directly
# on libvirt and qemu-img: one "bench: ..." line per operation.
bench: host-setup
	@echo "running the benchmark (under a minute)..." >&2
	@log=$$(mktemp); \
	if $(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 15m ./cmd/cimid/ >$$log 2>&1; then \
		grep '^bench: ' $$log; rc=$$?; \
	else \
		cat $$log; rc=1; \
	fi; \
	rm -f $$log; exit $$rc

clean:
	rm -rf bin
