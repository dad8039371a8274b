# layersplit: C core + Lua 5.4 policy.
PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    ?= build
CC       ?= cc
PKG_CONFIG ?= pkg-config

PKGS     := lua5.4 lua5.4-cjson libarchive zlib libdeflate libcrypto libcurl
HAVE_ISAL := $(shell $(PKG_CONFIG) --exists libisal 2>/dev/null && echo yes)
ifeq ($(HAVE_ISAL),yes)
PKGS     += libisal
DEFS     += -DLS_HAVE_ISAL
endif
HAVE_EDIT := $(shell $(PKG_CONFIG) --exists libedit 2>/dev/null && echo yes)
ifeq ($(HAVE_EDIT),yes)
PKGS     += libedit
DEFS     += -DLS_HAVE_LIBEDIT
endif

VERSION  := 0.1.0
# CFLAGS is the user's (optimisation, debug); what the build needs is kept
# apart, so `make CFLAGS=...` cannot drop it.  SANITIZE adds sanitizer flags.
CFLAGS   ?= -O2 -g
LS_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -pthread \
             -DLS_VERSION='"$(VERSION)"' $(DEFS) \
             $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
ALL_CFLAGS = $(LS_CFLAGS) $(CFLAGS) $(SANITIZE)
LDLIBS   += $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) -pthread -lm

SRCS     := $(wildcard src/*.c)
OBJS     := $(SRCS:src/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/embedded.o
LUA_SRCS := $(shell find lua -name '*.lua' | LC_ALL=C sort)

.PHONY: all deps check check-sanitize check-resources fuzz demo clean bench install uninstall

all: $(BUILD)/layersplit

$(BUILD)/layersplit: $(OBJS)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -iquote src -c -o $@ $<

# The bundled Lua is compiled into the binary, so it runs from anywhere.
$(BUILD)/embedded.c: $(LUA_SRCS) $(BUILD)/embed | $(BUILD)/obj
	$(BUILD)/embed $(LUA_SRCS) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/embedded.o: $(BUILD)/embedded.c
	$(CC) $(ALL_CFLAGS) -iquote src -c -o $@ $<

$(BUILD)/embed: tools/embed.c | $(BUILD)/obj
	$(CC) -O1 -o $@ $<

$(BUILD)/obj:
	mkdir -p $@

deps:
	@sh tools/deps.sh

check: deps all
	python3 tests/run.py

# The worst small archives (tests/resources.py) under hard limits: 10 s of
# CPU and 2 GiB of address space per run, peak RSS at most 256 MiB.
check-resources: deps all
	python3 tests/resources.py

# The whole suite against an ASan + UBSan build in $(BUILD)/asan: any
# sanitizer report or leak makes the run exit 86/87, which fails its test.
SAN_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
              -fno-omit-frame-pointer
SAN_ENV    := ASAN_OPTIONS=detect_leaks=1:exitcode=86:strict_string_checks=1:detect_stack_use_after_return=1 \
              UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=87

check-sanitize: deps
	$(MAKE) BUILD=$(BUILD)/asan SANITIZE="$(SAN_CFLAGS)" all
	$(SAN_ENV) LAYERSPLIT=$(abspath $(BUILD))/asan/layersplit python3 tests/run.py

# libFuzzer: archives from memory through the reader and the default policy
# (tests/fuzz/fuzz_archive.c), seeded with the fixtures; a crash, leak or
# sanitizer report fails it.
FUZZ_SECONDS ?= 60
FUZZ_CC    ?= clang
FUZZ_DIR   := $(BUILD)/fuzz

$(FUZZ_DIR)/fuzz_archive: tests/fuzz/fuzz_archive.c $(filter-out src/main.c,$(SRCS)) \
		$(BUILD)/embedded.c $(wildcard src/*.h)
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(LS_CFLAGS) $(CFLAGS) -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-fno-omit-frame-pointer -iquote src -o $@ tests/fuzz/fuzz_archive.c \
		$(filter-out src/main.c,$(SRCS)) $(BUILD)/embedded.c $(LDLIBS)

fuzz: deps $(FUZZ_DIR)/fuzz_archive
	sh tests/fuzz/run.sh $(FUZZ_DIR)/fuzz_archive $(FUZZ_SECONDS) $(FUZZ_DIR)

demo: deps all
	@sh tools/demo.sh

# layersplit against pigz, igzip, skopeo and the original algorithm on an
# image of real files built once into bench/cache/; writes bench/results.md.
# BENCH_SIZE_MB (1000), BENCH_RUNS (2) and the rest: see bench/bench.py.
bench: deps all
	python3 bench/bench.py

# The bundled Lua is in the binary already; its sources go to DATADIR/lua under
# their module names (layersplit/policies/NAME.lua), as examples to read.
BINDIR   ?= $(PREFIX)/bin
DATADIR  ?= $(PREFIX)/share/layersplit
MANDIR   ?= $(PREFIX)/share/man
DOCDIR   ?= $(PREFIX)/share/doc/layersplit

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(DATADIR)/lua/layersplit/policies
	install -m 755 $(BUILD)/layersplit $(DESTDIR)$(BINDIR)/layersplit
	install -m 644 doc/layersplit.1 $(DESTDIR)$(MANDIR)/man1/layersplit.1
	install -m 644 README.md SCRIPTING.md $(DESTDIR)$(DOCDIR)
	install -m 644 $(wildcard lua/layersplit/*.lua) $(DESTDIR)$(DATADIR)/lua/layersplit
	install -m 644 $(wildcard lua/policies/*.lua) $(DESTDIR)$(DATADIR)/lua/layersplit/policies

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/layersplit $(DESTDIR)$(MANDIR)/man1/layersplit.1
	rm -rf $(DESTDIR)$(DATADIR) $(DESTDIR)$(DOCDIR)

clean:
	rm -rf $(BUILD)
