# SPDX-License-Identifier: LGPL-2.1-or-later
# consumer: examples/consumer.c in Ruby (layout of examples/pc-shared.h): wait for NAME in iomemd, read the
# producer's message in place, answer through the same memory.
#   ruby consumer.rb SOCKET NAME [TIMEOUT_MS]
Warning[:experimental] = false
require "iomem"

READY, ACK, MESSAGE_AT, REPLY_AT, TEXT_MAX = 0, 4, 8, 8 + 1024, 1024

abort "usage: consumer.rb SOCKET NAME [TIMEOUT_MS]" unless (2..3).cover?(ARGV.size)
socket, name, timeout_ms = ARGV
timeout = Integer(timeout_ms || 30_000) / 1000.0
begin
  IOMem::Client.connect(socket: socket) do |client|
    client.open(name, timeout: timeout) do |region|
      page = region.map
      (timeout * 1000).to_i.succ.times do
        break if page.get_value(:u32, READY) == 1

        sleep 0.001
      end
      abort "consumer: no message from the producer" unless page.get_value(:u32, READY) == 1
      message = page.get_string(MESSAGE_AT, TEXT_MAX).unpack1("Z*")
      puts "consumer: received #{message.inspect}"
      page.set_string("ack: #{message[0, 1000]}\0", REPLY_AT)
      page.set_value(:u32, ACK, 1)
    end
  end
rescue SystemCallError => e
  abort "consumer: #{e.message}"
end
