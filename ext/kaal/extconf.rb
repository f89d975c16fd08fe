# frozen_string_literal: true

# Builds kaal's C extension. Each backend compiles only when its client
# library is found with pkg-config; a missing one is reported and disabled,
# never a build failure (Kaal::Native.backends lists what was built).
require "mkmf"

module KaalExtconf
  BACKENDS = [
    # [macro, pkg-config names, header, Debian package to install]
    ["KAAL_HAVE_REDIS", %w[hiredis], "hiredis/hiredis.h", "libhiredis-dev"],
    ["KAAL_HAVE_SQLITE", %w[sqlite3], "sqlite3.h", "libsqlite3-dev"],
    ["KAAL_HAVE_POSTGRES", %w[libpq], "libpq-fe.h", "libpq-dev"],
    # MariaDB Connector/C only (it also speaks to MySQL 8); Oracle's libmysqlclient
    # lacks the calls the backend uses.
    ["KAAL_HAVE_MYSQL", %w[libmariadb mariadb], "mysql.h", "libmariadb-dev"]
  ].freeze

  module_function

  def find_backend(macro, pkgs, header, package)
    found = pkgs.find { |pkg| pkg_config(pkg) }
    if found && have_header(header)
      $defs << "-D#{macro}"
      true
    else
      message "kaal: #{macro.sub("KAAL_HAVE_", "").downcase} backend disabled " \
              "(install #{package} and rebuild to enable it)\n"
      false
    end
  end

  def configure
    # Ruby's own headers trip -Wextra (unused parameters in inline helpers):
    # include them as system headers so the warnings left are kaal's.
    $INCFLAGS = $INCFLAGS.gsub(/-I(\$\((?:arch_hdrdir|hdrdir)\)(?:\/ruby\/backward)?)/, '-isystem \1')
    $CFLAGS << " -std=gnu99 -Wall -Wextra -fvisibility=hidden"
    $CFLAGS << " -Werror" if ENV["KAAL_DEV"] == "1"
    $CFLAGS << " -O2 -g"
    have_library("pthread") || abort("kaal: pthread is required")
    have_func("rb_thread_call_without_gvl", "ruby/thread.h")
    built = BACKENDS.select { |b| find_backend(*b) }.map { |b| b[0] }
    message "kaal: backends built: memory #{built.map { |m| m.sub("KAAL_HAVE_", "").downcase }.join(" ")}\n"
    create_makefile("kaal/kaal_ext")
  end
end

KaalExtconf.configure
