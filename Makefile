# layersplit: C core + Lua 5.4 policy.
PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    ?= build
CC       ?= cc
PKG_CONFIG ?= pkg-config

PKGS     := lua5.4 lua5.4-cjson libarchive zlib libcrypto
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
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -pthread \
            -DLS_VERSION='"$(VERSION)"' $(DEFS) \
            $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) -pthread -lm

SRCS     := $(wildcard src/*.c)
OBJS     := $(SRCS:src/%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/embedded.o
LUA_SRCS := $(shell find lua -name '*.lua' | LC_ALL=C sort)

.PHONY: all deps check demo clean bench install uninstall

all: $(BUILD)/layersplit

$(BUILD)/layersplit: $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) | $(BUILD)/obj
	$(CC) $(CFLAGS) -iquote src -c -o $@ $<

# The bundled Lua is compiled into the binary, so it runs from anywhere.
$(BUILD)/embedded.c: $(LUA_SRCS) $(BUILD)/embed | $(BUILD)/obj
	$(BUILD)/embed $(LUA_SRCS) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/embedded.o: $(BUILD)/embedded.c
	$(CC) $(CFLAGS) -iquote src -c -o $@ $<

$(BUILD)/embed: tools/embed.c | $(BUILD)/obj
	$(CC) -O1 -o $@ $<

$(BUILD)/obj:
	mkdir -p $@

deps:
	@sh tools/deps.sh

check: deps all
	python3 tests/run.py

demo: deps all
	@sh tools/demo.sh

clean:
	rm -rf $(BUILD)
