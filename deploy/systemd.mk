# The systemd units (deploy/systemd).
#
#   make test-systemd                      # verify, hardening, limits under strace
#   make install-systemd                   # as root: binary, units, user, settings
#   make install-systemd DESTDIR=/tmp/root # the same files under another root
#
# install-systemd never replaces an existing /etc/default/shoal-agent or
# /etc/default/shoal-tracker. The units run /usr/local/bin/shoal.

SYSTEMD_UNIT_DIR ?= /etc/systemd/system
SYSUSERS_DIR     ?= /etc/sysusers.d
DEFAULTS_DIR     ?= /etc/default

.PHONY: test-systemd install-systemd

test-systemd: deps
	CI=true $(GO) test -race -count=1 ./deploy/systemd

install-systemd: build
	install -D -m 0755 $(BIN)/shoal $(DESTDIR)/usr/local/bin/shoal
	install -D -m 0644 -t $(DESTDIR)$(SYSTEMD_UNIT_DIR) deploy/systemd/shoal-agent.service deploy/systemd/shoal-tracker.service
	install -D -m 0644 deploy/systemd/shoal.sysusers $(DESTDIR)$(SYSUSERS_DIR)/shoal.conf
	@for u in agent tracker; do f=$(DESTDIR)$(DEFAULTS_DIR)/shoal-$$u; \
	  if [ -e $$f ]; then echo "kept $$f"; else install -D -m 0600 deploy/systemd/shoal-$$u.env $$f && echo "wrote $$f: edit it"; fi; done
	@if [ -z "$(DESTDIR)" ]; then \
	  systemd-sysusers $(SYSUSERS_DIR)/shoal.conf; \
	  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	  echo "then: systemctl enable --now shoal-agent (or shoal-tracker)"; fi
