# remote desktops for CTF players, as a Caddy module.
# `make run` is the demo; `make test` is what CI runs (it brings up the test
# bed: Docker, images, three SSH+Docker hosts).

SHELL     := /bin/bash
GO        ?= go
CADDY     ?= ./caddy
MODULE    := github.com/ctf-desktops/caddy-remote-desktop
TESTBED   := bash testdata/testbed/testbed.sh
GOTEST    ?= $(GO) test -race -count=1 -timeout 40m
# Integration tests share the test bed (and some stop its hosts on
# purpose), so packages run one at a time; they compile in parallel first.
GOTEST_BED ?= $(GOTEST) -p 1
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build xcaddy xcaddy-check lint test unit session-cover bench soak fuzz browser-deps monitoring-deps testbed-up testbed-down testbed-status images run clean

all: build

## build: ./caddy with the standard modules and this one
build:
	$(GO) build -o $(CADDY) ./cmd/caddy

## xcaddy: the same binary built the xcaddy way: the README's command, with xcaddy pinned
# The plugin package is $(MODULE)/module; the module itself comes from ./ by
# --replace. This module is not published, so GOPRIVATE keeps its path away
# from the module proxy and GOVCS away from git: Go's lookups for it then
# answer "not found" and the replacement is used, offline or not.
XCADDY       := $(GO) run github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5
XCADDY_BUILD := GOPRIVATE=$(MODULE) GOVCS=$(MODULE):off $(XCADDY) build v2.11.9 --with $(MODULE)/module --replace $(MODULE)=.
XCADDY_OUT   := out/xcaddy/caddy
xcaddy:
	$(XCADDY_BUILD)

# The xcaddy check of `make test`: rebuilt only when a Go file, go.mod or
# go.sum changed, into its own file (not ./caddy), which must list both modules.
$(XCADDY_OUT): $(shell git ls-files '*.go' go.mod go.sum 2>/dev/null)
	@mkdir -p $(dir $@)
	$(XCADDY_BUILD) --output $@
xcaddy-check: $(XCADDY_OUT)
	$(XCADDY_OUT) list-modules | grep -qx 'http.handlers.remote_desktop'
	$(XCADDY_OUT) list-modules | grep -qx 'remote_desktop'

## lint: gofmt and go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## unit: the tests that need no test bed (integration tests skip, loudly, even
## when a bed is up); module/session's coverage from them must stay >= SESSION_COVER_MIN %
SESSION_COVER_MIN ?= 70
UNIT_ENV := RD_TESTBED=$(CURDIR)/out/no-testbed.json RD_TESTBED_REQUIRED=
unit:
	@mkdir -p out
	$(UNIT_ENV) $(GOTEST) $$($(GO) list ./... | grep -vx '$(MODULE)/module/session')
	$(MAKE) --no-print-directory session-cover

## session-cover: module/session's tests without the bed, and their coverage
session-cover:
	@mkdir -p out
	$(UNIT_ENV) $(GOTEST) -coverprofile=out/session.cover ./module/session
	@$(GO) tool cover -func=out/session.cover | awk '/^total:/ { sub("%", "", $$3); \
		printf "module/session coverage without the test bed: %s%% (at least $(SESSION_COVER_MIN)%%)\n", $$3; \
		if ($$3 + 0 < $(SESSION_COVER_MIN)) { print "coverage of module/session is below $(SESSION_COVER_MIN)%"; exit 1 } }'

## test: lint, build, bring up the test bed, run every test with -race
test: lint build xcaddy-check testbed-up browser-deps monitoring-deps
	$(CADDY) list-modules | grep -qx 'http.handlers.remote_desktop'
	$(CADDY) list-modules | grep -qx 'remote_desktop'
	$(GOTEST) -run '^$$' ./... >/dev/null
	$(MAKE) --no-print-directory session-cover
	RD_TESTBED_REQUIRED=1 RD_CADDY_BIN=$(abspath $(CADDY)) $(GOTEST_BED) ./... 2>&1 | tee test-output.log; exit $${PIPESTATUS[0]}

testbed-up:
	$(TESTBED) up

## browser-deps: Debian's chromium for the browser end-to-end test
browser-deps:
	bash testdata/browser/ensure-chromium.sh

## monitoring-deps: Prometheus's promtool (Debian's prometheus package) for the metrics tests
monitoring-deps:
	bash testdata/monitoring/ensure-promtool.sh

testbed-down:
	$(TESTBED) down

testbed-status:
	$(TESTBED) status

images:
	$(TESTBED) images

## bench: the benchmark table (see BENCHMARKS.md); needs the test bed, 6-15 minutes
bench: build testbed-up
	bash testdata/bench/ensure-tools.sh
	RD_BENCH=1 RD_TESTBED_REQUIRED=1 RD_CADDY_BIN=$(abspath $(CADDY)) $(GO) test -count=1 -timeout 30m -run '^TestBench$$' -v ./module/internal/bench

## soak: the reliability and system suites repeated SOAK_COUNT times (longer than CI)
SOAK_COUNT ?= 5
soak: build testbed-up
	RD_TESTBED_REQUIRED=1 RD_CADDY_BIN=$(abspath $(CADDY)) $(GOTEST_BED) -count=$(SOAK_COUNT) -timeout 3h \
		./module/internal/faults ./module/internal/system ./module/session

## fuzz: every fuzz target for FUZZTIME each (seeds and finds kept under each package's testdata/fuzz)
FUZZTIME ?= 20s
FUZZ_TARGETS := ./module/config:FuzzParse ./module:FuzzAppCaddyfile ./module:FuzzHandlerCaddyfile \
	./module/proxy:FuzzParsePath ./module/web:FuzzAdminBody
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg; done

## run: the demo on http://localhost:8080/remote-desktop (local Docker, demo logins)
run:
	bash testdata/demo/run.sh

clean:
	rm -f $(CADDY) test-output.log
	rm -rf out
