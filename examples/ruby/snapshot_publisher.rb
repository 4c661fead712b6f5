# SPDX-License-Identifier: LGPL-2.1-or-later
# snapshot_publisher: publish COUNT immutable snapshots under NAME, each replacing the last in one step. Each is a
# local memfd written here, sealed against writes (readers can trust it never changes) and published with the
# generation it replaces (expect_generation:), so two publishers cannot overwrite each other's versions unseen;
# readers of an older version keep it. Layout (as examples/python/snapshot_publisher.py): "snapshot N\n" at 0,
# then SIZE bytes of N % 251 from offset 64.
#   ruby snapshot_publisher.rb SOCKET NAME [COUNT]
Warning[:experimental] = false
require "iomem"

SIZE = 64 * 1024
abort "usage: snapshot_publisher.rb SOCKET NAME [COUNT]" unless (2..3).cover?(ARGV.size)
socket, name, count = ARGV
IOMem::Client.connect(socket: socket) do |client|
  generation = nil
  1.upto(Integer(count || 5)) do |n|
    IOMem::Region.with(64 + SIZE, backend: :memfd) do |snap|
      buf = snap.map
      buf.set_string("snapshot #{n}\n", 0)
      buf.set_string((n % 251).chr * SIZE, 64)
      buf.free # unmap: a writable mapping would refuse the write seal
      snap.seal(:shrink, :grow, :write) # immutable from here on, for every holder
      generation = client.publish(name, snap, expect_generation: generation, mode: 0o644)
    end
    puts "publisher: snapshot #{n} is generation #{generation}"
    $stdout.flush
  end
end
