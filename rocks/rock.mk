# rocks/rock.mk: the build rocks/layersplit-scm-1.rockspec runs (luarocks'
# "make" type), from the top of the tree:
#
#   luarocks --lua-version 5.4 make --tree TREE rocks/layersplit-scm-1.rockspec
#   ISAL=1 luarocks --lua-version 5.4 make --tree TREE rocks/layersplit-scm-1.rockspec
#
# The C modules layersplit.{archive,digest,fs,gzip,progress,registry} and the Lua
# runtime for a plain lua5.4.  Objects go to build/rock/, so the sources
# stay as they are.  luarocks passes CFLAGS, LIBFLAG, LUA_INCDIR and each
# dependency's INCDIR and LIBDIR to the build, the rock's LIBDIR and LUADIR
# to the install.  ISAL=1 (in the environment, or ISAL=1 on the command line
# of make) adds the ISA-L engine, linked with -lisal (Debian: libisal-dev).
# Not in the rock: layersplit.cli, .console, .host and .repl, which need the layersplit
# binary's own Lua state.

CC      ?= cc
CFLAGS  ?= -O2 -fPIC
LIBFLAG ?= -shared
WITH_ISAL := $(filter 1 yes,$(ISAL))
ROCK    := build/rock/$(if $(WITH_ISAL),isal,default)
DEFS    := -D_GNU_SOURCE $(if $(WITH_ISAL),-DLS_HAVE_ISAL)
INCS    := $(addprefix -I,$(LUA_INCDIR) $(LIBARCHIVE_INCDIR) $(ZLIB_INCDIR) \
             $(LIBDEFLATE_INCDIR) $(OPENSSL_INCDIR))
LIBDIRS := $(addprefix -L,$(LIBARCHIVE_LIBDIR) $(ZLIB_LIBDIR) $(LIBDEFLATE_LIBDIR) \
             $(OPENSSL_LIBDIR) $(CURL_LIBDIR))

# Each module: its sources (src/NAME.c) and libraries.  src/ is never an
# include directory: <archive.h> is libarchive's, "archive.h" the module's own.
MODULES       := archive digest fs gzip progress registry
archive_SRCS  := archive reader paxscan path sink
archive_LIBS  := -larchive
digest_SRCS   := digest sink
digest_LIBS   := -lcrypto
fs_SRCS       := fs fstree fswriter stage tree path printable sink
fs_LIBS       := -lcrypto
gzip_SRCS     := gzip gzwrite gzpool gzinflate deflate_zlib deflate_libdeflate deflate_walk \
                 deflate_isal digest sink
gzip_LIBS     := -lz -ldeflate -lcrypto -pthread $(if $(WITH_ISAL),-lisal)
progress_SRCS := progress archive reader paxscan path printable sink
progress_LIBS := -larchive -pthread
registry_SRCS := registry reghttp regupload printable sink
registry_LIBS := -lcurl -lcrypto -pthread

LUA_MODULES := $(filter-out lua/layersplit/cli.lua lua/layersplit/console.lua,\
                 $(wildcard lua/layersplit/*.lua))
POLICIES    := $(wildcard lua/policies/*.lua)
SOS         := $(MODULES:%=$(ROCK)/layersplit/%.so)

.PHONY: all install
.SECONDARY:
all: $(SOS)

$(ROCK)/obj/%.o: src/%.c $(wildcard src/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -std=c11 -pthread $(DEFS) $(INCS) -c -o $@ $<

.SECONDEXPANSION:
$(ROCK)/layersplit/%.so: $$(addprefix $(ROCK)/obj/,$$(addsuffix .o,$$($$*_SRCS)))
	@mkdir -p $(@D)
	$(CC) $(LIBFLAG) -o $@ $^ $(LIBDIRS) $($*_LIBS)

install: all
	mkdir -p $(INST_LIBDIR)/layersplit $(INST_LUADIR)/layersplit/policies
	cp $(SOS) $(INST_LIBDIR)/layersplit/
	cp $(LUA_MODULES) $(INST_LUADIR)/layersplit/
	cp $(POLICIES) $(INST_LUADIR)/layersplit/policies/
