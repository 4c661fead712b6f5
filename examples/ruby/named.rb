# SPDX-License-Identifier: LGPL-2.1-or-later
# named: what the named-region variants of the examples share: arguments, and signalling through iomemd.
#
# In "named" mode an example runs as separate, unrelated programs (started by hand or by a test, not forked from
# each other) that meet by name in iomemd instead of inheriting an fd or receiving one with send_io.
# One program tells another "done" (or "ready") by creating a small region NAME.done; the other waits for it
# with Client#open(timeout:), which the daemon answers as soon as the name exists, so neither polls.
require "iomem"

module Named
  TIMEOUT = 30 # seconds any role waits for the other before giving up

  # Named.args(usage) => [socket, name, *rest] from ARGV after the mode word
  def self.args(usage, count)
    rest = ARGV.drop(1)
    abort "usage: #{usage}" unless rest.size == count

    rest
  end

  # Tell whoever waits on "#{name}.#{what}".
  def self.signal(client, name, what = "done")
    client.create("#{name}.#{what}", 1).close
  end

  # Wait until "#{name}.#{what}" exists, then remove it.
  def self.wait(client, name, what = "done")
    client.open("#{name}.#{what}", timeout: TIMEOUT).close
    client.delete("#{name}.#{what}")
  end
end
