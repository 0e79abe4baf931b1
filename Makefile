# Release build of fdholder: static (CGO_ENABLED=0), reproducible binaries
# with the version stamped in, their man pages, "make install" under PREFIX
# (and DESTDIR), and "make deb" for the Debian package.
#
#   make                      bin/fdholderd, bin/fdclient, bin/man/*
#   make install PREFIX=/usr/local DESTDIR=
#   make deb                  dist/fdholder_VERSION_amd64.deb
#   make BIN=DIR DIST=DIR ... elsewhere than bin/ and dist/ (the tests do)
#
# Reproducible: the same checkout builds byte-identical binaries, wherever
# it is and whenever: -trimpath drops the checkout's path, -buildvcs=false
# the commit, time and "modified" flag go would otherwise stamp, and an
# empty -buildid the ID derived from them. The version and the date come
# from the top entry of deploy/debian/changelog, the one place a release
# is numbered.

GO ?= go
VERSION := $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' deploy/debian/changelog)
# The changelog's date, for the man pages and the package's timestamps.
SOURCE_DATE_EPOCH := $(shell date -d "$$(sed -n 's/^ -- .*>  //p' deploy/debian/changelog | head -1)" +%s)
DATE := $(shell date -u -d @$(SOURCE_DATE_EPOCH) +%Y-%m-%d)
export SOURCE_DATE_EPOCH

BIN ?= bin
DIST ?= dist
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
SYSCONFDIR ?= $(PREFIX)/etc
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/fdholder
UNITDIR ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/vendor-completions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d

export CGO_ENABLED := 0
GOBUILD := $(GO) build -trimpath -buildvcs=false \
	-ldflags '-s -w -buildid= -X github.com/fdholder/fdholder/internal/version.Version=$(VERSION)'

MANPAGES := $(BIN)/man/fdholderd.8 $(BIN)/man/fdclient.1 $(BIN)/man/fdholder-policy.5
DOCS := README.md docs/operations.md docs/security.md docs/architecture.md docs/protocol.md

.PHONY: all man install deb clean FORCE

all: $(BIN)/fdholderd $(BIN)/fdclient man

# go decides what is stale; make only asks it every time.
$(BIN)/fdholderd $(BIN)/fdclient: FORCE
	$(GOBUILD) -o $@ ./cmd/$(@F)

man: $(MANPAGES)
$(MANPAGES): $(BIN)/fdholderd $(BIN)/fdclient $(wildcard deploy/man/*.in) deploy/fdholder/policy.toml
	$(GO) run ./internal/manpage/mangen -version $(VERSION) -date $(DATE) -bin $(BIN) -out $(BIN)/man deploy/man/*.in

# The units name the binaries where the package puts them (/usr/sbin,
# /usr/bin) and the policy in /etc/fdholder; install rewrites those paths
# to the ones given here.
UNITSED := -e 's|/usr/sbin/fdholderd|$(SBINDIR)/fdholderd|g' \
	-e 's|/usr/bin/fdclient|$(BINDIR)/fdclient|g' \
	-e 's|/etc/fdholder/|$(SYSCONFDIR)/fdholder/|g'

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSCONFDIR)/fdholder $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(BASHCOMPDIR) \
		$(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	install -m 0755 $(BIN)/fdholderd $(DESTDIR)$(SBINDIR)/fdholderd
	install -m 0755 $(BIN)/fdclient $(DESTDIR)$(BINDIR)/fdclient
	for u in fdholderd.socket fdholderd.service; do \
		sed $(UNITSED) deploy/systemd/$$u >$(DESTDIR)$(UNITDIR)/$$u && chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	sed $(UNITSED) deploy/systemd/example-web.service >$(DESTDIR)$(DOCDIR)/examples/example-web.service
	install -m 0644 deploy/systemd/gunicorn.conf.py $(DESTDIR)$(DOCDIR)/examples/gunicorn.conf.py
	install -m 0644 deploy/fdholder/policy.toml $(DESTDIR)$(SYSCONFDIR)/fdholder/policy.toml
	install -m 0644 $(BIN)/man/fdclient.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(BIN)/man/fdholder-policy.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 $(BIN)/man/fdholderd.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	install -m 0644 deploy/completion/fdclient.bash $(DESTDIR)$(BASHCOMPDIR)/fdclient
	install -m 0644 deploy/completion/fdholderd.bash $(DESTDIR)$(BASHCOMPDIR)/fdholderd
	install -m 0644 deploy/completion/_fdclient deploy/completion/_fdholderd $(DESTDIR)$(ZSHCOMPDIR)/
	install -m 0644 deploy/completion/fdclient.fish deploy/completion/fdholderd.fish $(DESTDIR)$(FISHCOMPDIR)/

# The package is staged under $(DIST) and built from there by dpkg-deb.
deb:
	rm -rf $(DIST)/stage
	$(MAKE) install DESTDIR=$(abspath $(DIST))/stage PREFIX=/usr SYSCONFDIR=/etc UNITDIR=/lib/systemd/system
	VERSION=$(VERSION) deploy/debian/build-deb $(DIST)/stage $(DIST)
	rm -rf $(DIST)/stage

clean:
	rm -rf $(BIN) $(DIST)
