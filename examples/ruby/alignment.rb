# SPDX-License-Identifier: LGPL-2.1-or-later
# alignment: the seed guide's "Memory Alignment": records written at cache-line (64-byte) aligned offsets.
#   ruby alignment.rb local                         - write and read back in one program
#   ruby alignment.rb named SOCKET NAME writer      - unrelated programs: the writer publishes the records,
#   ruby alignment.rb named SOCKET NAME reader        the reader opens the region read-only and checks them
Warning[:experimental] = false
require "iomem"
require_relative "named"

CACHE_LINE_SIZE = 64
RECORDS = { 0 => "Data 1", 100 => "Data 2", 200 => "Data 3" }.freeze
WANT = { 0 => 0, 100 => 128, 200 => 256 }.freeze

def aligned_offset(offset)
  (offset + CACHE_LINE_SIZE - 1) & ~(CACHE_LINE_SIZE - 1)
end

def write_records(buffer)
  RECORDS.each do |offset, data|
    at = aligned_offset(offset)
    abort "alignment: #{offset} aligned to #{at}, want #{WANT[offset]}" unless at == WANT[offset]
    buffer.set_string(data, at)
  end
end

def check_records(buffer)
  RECORDS.each do |offset, data|
    got = buffer.get_string(aligned_offset(offset), data.length)
    abort "alignment: at #{aligned_offset(offset)}: #{got.inspect}, want #{data.inspect}" unless got == data
    puts "offset #{aligned_offset(offset)}: #{got}"
  end
end

case ARGV[0]
when "local"
  IOMem.with(4096) do |handle|
    write_records(handle.map)
    check_records(handle.map) # a second mapping of the same memory
  end
when "named"
  socket, name, role = Named.args("alignment.rb named SOCKET NAME writer|reader", 3)
  IOMem::Client.connect(socket: socket) do |client|
    if role == "writer"
      client.create(name, 4096, exclusive: true, lease: true, mode: 0o644) do |handle|
        write_records(handle.map)
        Named.signal(client, name, "ready")
        Named.wait(client, name)
      end
    else
      Named.wait(client, name, "ready") # the writer has written every record
      client.open(name, read_only: true) do |handle|
        buffer = handle.map
        abort "alignment: a read-only open gave a writable buffer" unless buffer.readonly?
        check_records(buffer)
      end
      Named.signal(client, name)
    end
  end
else
  abort "usage: alignment.rb local | named SOCKET NAME writer|reader"
end
