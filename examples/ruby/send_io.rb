# SPDX-License-Identifier: LGPL-2.1-or-later
# send_io: the seed guide's "Unix Domain Socket File Descriptor Passing": the parent passes the region's fd to a
# child over a socket; the child maps it with IO::Buffer.map and writes back.
#   ruby send_io.rb local                       - the guide's socketpair, send_io and recv_io
#   ruby send_io.rb named SOCKET NAME parent    - unrelated programs: iomemd passes the fd (OPEN by name)
#   ruby send_io.rb named SOCKET NAME child       instead of a socket between the two
Warning[:experimental] = false
require "iomem"
require "socket"
require_relative "named"

SIZE = 2048
PARENT_DATA = "Shared data from parent"
CHILD_DATA = "Data from child proc"
CONFIRM = "Child processing complete"

def check(what, got, want)
  abort "send_io: #{what}: got #{got.inspect}, want #{want.inspect}" unless got == want
end

# the child's half, the same whichever way the fd arrived
def child_work(received_io)
  buffer = ::IO::Buffer.map(received_io, SIZE)
  parent_data = buffer.get_string(0, PARENT_DATA.length)
  puts "Child read: #{parent_data}"
  check("child", parent_data, PARENT_DATA)
  buffer.set_string(CHILD_DATA, 1000)
  buffer.free # unmap now
end

def parent_check(buffer)
  child_data = buffer.get_string(1000, CHILD_DATA.length)
  puts "Child wrote: #{child_data}"
  check("parent", child_data, CHILD_DATA)
end

case ARGV[0]
when "local"
  handle = IOMem.new(SIZE)
  buffer = handle.map
  buffer.set_string(PARENT_DATA, 0)
  parent_socket, child_socket = UNIXSocket.socketpair

  pid = fork do
    parent_socket.close
    received_io = child_socket.recv_io
    child_work(received_io)
    child_socket.write(CONFIRM)
    received_io.close
    child_socket.close
  end
  child_socket.close
  parent_socket.send_io(handle.io) # an IO over a duplicate of the region's fd
  response = parent_socket.read(100)
  puts "Parent received: #{response}"
  check("confirmation", response, CONFIRM)
  parent_check(buffer)
  Process.wait(pid)
  abort "send_io: child failed" unless $?.success?
  parent_socket.close
  handle.close
when "named"
  socket, name, role = Named.args("send_io.rb named SOCKET NAME parent|child", 3)
  IOMem::Client.connect(socket: socket) do |client|
    if role == "parent"
      client.create(name, SIZE, exclusive: true, lease: true) do |handle|
        buffer = handle.map
        buffer.set_string(PARENT_DATA, 0)
        Named.signal(client, name, "ready") # written: the child may read
        Named.wait(client, name)
        puts "Parent received: #{CONFIRM}"
        parent_check(buffer)
      end
    else
      Named.wait(client, name, "ready")
      client.open(name) do |handle|
        child_work(handle.io) # the fd iomemd sent, as an IO
      end
      Named.signal(client, name)
    end
  end
else
  abort "usage: send_io.rb local | named SOCKET NAME parent|child"
end
