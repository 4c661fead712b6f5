# SPDX-License-Identifier: LGPL-2.1-or-later
# batch: the seed guide's "Batch Operations": build the bytes first and write them with one set_string instead
# of many small writes.
#   ruby batch.rb local                        - in one program
#   ruby batch.rb named SOCKET NAME writer     - unrelated programs: one batch written, read by another
#   ruby batch.rb named SOCKET NAME reader       program that opened the region read-only
Warning[:experimental] = false
require "iomem"
require_relative "named"

RECORD = 16
COUNT = 64

# COUNT fixed-size records "rec 0001 .......", built as one String
def batch
  (1..COUNT).map { |i| format("rec %04d", i).ljust(RECORD, ".") }.join
end

def write_batch(buffer)
  buffer.set_string("ABC", 0) # the guide's example: one write, not three
  buffer.set_string(batch, 64) # and 64 records in one write
end

def check_batch(buffer)
  got = buffer.get_string(0, 3)
  abort "batch: #{got.inspect}, want \"ABC\"" unless got == "ABC"
  records = buffer.get_string(64, RECORD * COUNT)
  abort "batch: records differ" unless records == batch
  puts "read ABC and #{COUNT} records, last #{records[-RECORD..].inspect}"
end

case ARGV[0]
when "local"
  IOMem.with(4096) do |handle|
    write_batch(handle.map)
    check_batch(handle.map)
  end
when "named"
  socket, name, role = Named.args("batch.rb named SOCKET NAME writer|reader", 3)
  IOMem::Client.connect(socket: socket) do |client|
    if role == "writer"
      client.create(name, 4096, exclusive: true, lease: true, mode: 0o644) do |handle|
        write_batch(handle.map)
        Named.signal(client, name, "ready") # the reader opens once the batch is complete
        Named.wait(client, name)
      end
    else
      Named.wait(client, name, "ready")
      client.open(name, read_only: true) { |handle| check_batch(handle.map) }
      Named.signal(client, name)
    end
  end
else
  abort "usage: batch.rb local | named SOCKET NAME writer|reader"
end
