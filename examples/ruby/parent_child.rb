# SPDX-License-Identifier: LGPL-2.1-or-later
# parent_child: the seed guide's "Basic Process Sharing": a parent and a child share one region and see each
# other's writes.
#   ruby parent_child.rb local                      - the guide's fork: the child inherits the region
#   ruby parent_child.rb named SOCKET NAME parent   - two unrelated programs meet by name in iomemd;
#   ruby parent_child.rb named SOCKET NAME child      start both (either first), each waits for the other
Warning[:experimental] = false
require "iomem"
require_relative "named"

MESSAGE = "Hello from parent!"
RESPONSE = "Hello from child!"

def check(what, got, want)
  abort "parent_child: #{what}: got #{got.inspect}, want #{want.inspect}" unless got == want
end

case ARGV[0]
when "local"
  handle = IOMem.new(1024)
  buffer = handle.map
  buffer.set_string(MESSAGE, 0)

  pid = fork do
    # the child inherits the region across fork
    child_buffer = handle.map
    received = child_buffer.get_string(0, MESSAGE.length)
    puts "Child received: #{received}"
    check("child", received, MESSAGE)
    child_buffer.set_string(RESPONSE, 100)
  end
  Process.wait(pid)
  abort "parent_child: child failed" unless $?.success?

  child_response = buffer.get_string(100, RESPONSE.length)
  puts "Parent received: #{child_response}"
  check("parent", child_response, RESPONSE)
  handle.close
when "named"
  socket, name, role = Named.args("parent_child.rb named SOCKET NAME parent|child", 3)
  IOMem::Client.connect(socket: socket) do |client|
    if role == "parent"
      # a lease: the name goes away when this program disconnects, whatever happens
      client.create(name, 1024, exclusive: true, lease: true) do |handle|
        buffer = handle.map
        buffer.set_string(MESSAGE, 0)
        Named.signal(client, name, "ready") # written: the child may read
        Named.wait(client, name) # the child has answered
        child_response = buffer.get_string(100, RESPONSE.length)
        puts "Parent received: #{child_response}"
        check("parent", child_response, RESPONSE)
      end
    else
      Named.wait(client, name, "ready")
      client.open(name) do |handle|
        child_buffer = handle.map
        received = child_buffer.get_string(0, MESSAGE.length)
        puts "Child received: #{received}"
        check("child", received, MESSAGE)
        child_buffer.set_string(RESPONSE, 100)
      end
      Named.signal(client, name)
    end
  end
else
  abort "usage: parent_child.rb local | named SOCKET NAME parent|child"
end
