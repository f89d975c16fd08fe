# frozen_string_literal: true

# Builds kaal's C extension. Each backend compiles only when its client
# library is found (--with-NAME-dir=PREFIX, else pkg-config, else the default
# paths); a missing one is reported and disabled, never a build failure
# (Kaal::Native.backends lists what was built). NAME: hiredis, sqlite3, pq,
# mariadb (gem install kaal -- --with-hiredis-dir=/opt/hiredis).
require "mkmf"

module KaalExtconf
  BACKENDS = [
    # [macro, pkg-config names, header, Debian package to install,
    #  dir_config name (--with-NAME-dir, --with-NAME-include, --with-NAME-lib), library, a function in it]
    ["KAAL_HAVE_REDIS", %w[hiredis], "hiredis/hiredis.h", "libhiredis-dev", "hiredis", "hiredis", "redisConnectWithTimeout"],
    ["KAAL_HAVE_SQLITE", %w[sqlite3], "sqlite3.h", "libsqlite3-dev", "sqlite3", "sqlite3", "sqlite3_open_v2"],
    ["KAAL_HAVE_POSTGRES", %w[libpq], "libpq-fe.h", "libpq-dev", "pq", "pq", "PQconnectdbParams"],
    # MariaDB Connector/C only (it also speaks to MySQL 8); Oracle's libmysqlclient
    # lacks the calls the backend uses.
    ["KAAL_HAVE_MYSQL", %w[libmariadb mariadb], "mysql.h", "libmariadb-dev", "mariadb", "mariadb", "mysql_real_connect"]
  ].freeze

  module_function

  # A library is looked for where --with-NAME-dir (or -include / -lib) says,
  # as ruby-pg and mysql2 do; otherwise with pkg-config, then in the
  # compiler's default paths.
  def find_backend(macro, pkgs, header, package, dir_name, lib, func)
    given = dir_config(dir_name).any?
    found = !given && pkgs.find { |pkg| pkg_config(pkg) }
    if have_header(header) && (found || have_library(lib, func))
      $defs << "-D#{macro}"
      true
    else
      message "kaal: #{macro.sub("KAAL_HAVE_", "").downcase} backend disabled " \
              "(install #{package}, or pass --with-#{dir_name}-dir=PREFIX, and rebuild to enable it)\n"
      false
    end
  end

  # TLS for the Redis backend: kaal speaks TLS itself with OpenSSL's libssl
  # (hiredis is used for the protocol only). Without it rediss:// is refused
  # with a message saying so.
  def find_openssl
    given = dir_config("openssl").any?
    found = !given && pkg_config("openssl")
    if have_header("openssl/ssl.h") && (found || (have_library("crypto", "ERR_get_error") &&
                                                  have_library("ssl", "SSL_CTX_new")))
      $defs << "-DKAAL_HAVE_OPENSSL"
      true
    else
      message "kaal: redis TLS disabled (install libssl-dev, or pass --with-openssl-dir=PREFIX, and rebuild " \
              "to enable rediss://)\n"
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
    find_openssl if built.include?("KAAL_HAVE_REDIS")
    message "kaal: backends built: memory #{built.map { |m| m.sub("KAAL_HAVE_", "").downcase }.join(" ")}\n"
    create_makefile("kaal/kaal_ext")
  end
end

KaalExtconf.configure
