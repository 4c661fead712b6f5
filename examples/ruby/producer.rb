# SPDX-License-Identifier: LGPL-2.1-or-later
# producer: examples/producer.c in Ruby, byte for byte the same layout (examples/pc-shared.h), so a Ruby program
# and a C program share one region: create NAME in iomemd, publish a message, wait for the consumer's reply.
#   ruby producer.rb SOCKET NAME [MESSAGE]
Warning[:experimental] = false
require "iomem"

# struct pc_page: u32 ready, u32 ack, char message[1024], char reply[1024]
READY, ACK, MESSAGE_AT, REPLY_AT, TEXT_MAX = 0, 4, 8, 8 + 1024, 1024

abort "usage: producer.rb SOCKET NAME [MESSAGE]" unless (2..3).cover?(ARGV.size)
socket, name, message = ARGV
message ||= "Hello from the producer!"
IOMem::Client.connect(socket: socket) do |client|
  client.create(name, 4096, exclusive: true, lease: true) do |region|
    page = region.map
    page.set_string("#{message}\0", MESSAGE_AT)
    page.set_value(:u32, READY, 1) # after the text: the consumer reads it once ready is 1
    puts "producer: published #{message.inspect} in #{name}"
    $stdout.flush
    # the reply arrives through the shared memory only: no request to the daemon
    30_000.times do
      break if page.get_value(:u32, ACK) == 1

      sleep 0.001
    end
    reply = page.get_string(REPLY_AT, TEXT_MAX).unpack1("Z*")
    abort "producer: #{page.get_value(:u32, ACK) == 1 ? 'wrong' : 'no'} reply from the consumer" unless reply == "ack: #{message}"
    puts "producer: consumer replied #{reply.inspect}"
  end
end
