# SPDX-License-Identifier: LGPL-2.1-or-later
# worker_pool: the seed guide's "Multi-Process Worker Pool": work is written into one shared region, workers are
# told where over a socket, read it in place and write their result back into the region.
#   ruby worker_pool.rb local                              - the guide: forked workers get the fd with send_io
#   ruby worker_pool.rb named SOCKET NAME pool CTRL N      - unrelated programs: the pool listens on the socket
#   ruby worker_pool.rb named SOCKET NAME worker CTRL ID     path CTRL; workers open the region by NAME
Warning[:experimental] = false
require "iomem"
require "socket"
require_relative "named"

BUFFER_SIZE = 1024 * 1024
WORK = ["Hello World", "Shared Memory", "Zero Copy IPC"].freeze

# A worker's loop, whichever way it got the region: WORK:offset:length in, DONE:offset:length out.
def worker_loop(socket, buffer, worker_id)
  puts "Worker #{worker_id} started"
  loop do
    command = socket.readline.chomp
    break if command == "QUIT"
    next unless command.start_with?("WORK:")

    _, offset, length = command.split(":")
    offset = offset.to_i
    data = buffer.get_string(offset, length.to_i)
    result = data.reverse
    result_offset = offset + 10_000
    buffer.set_string(result, result_offset)
    socket.write("DONE:#{result_offset}:#{result.length}:#{worker_id}\n")
  end
  puts "Worker #{worker_id} finished"
end

class SharedMemoryWorkerPool
  attr_reader :buffer

  # sockets: one connected socket per worker
  def initialize(buffer, sockets)
    @buffer = buffer
    @sockets = sockets
    @next = 0
  end

  # Write the data into shared memory, hand the job to the next worker (round robin), return its result.
  def submit_work(data, offset = 0)
    @buffer.set_string(data, offset)
    socket = @sockets[@next]
    @next = (@next + 1) % @sockets.size
    socket.write("WORK:#{offset}:#{data.length}\n")
    _, result_offset, length, worker = socket.readline.chomp.split(":")
    result = @buffer.get_string(result_offset.to_i, length.to_i) # read in place: no copy went over the socket
    abort "worker_pool: worker #{worker} returned #{result.inspect} for #{data.inspect}" unless result == data.reverse
    puts "result from worker #{worker}: #{result.inspect}"
    result
  end

  def shutdown
    @sockets.each { |socket| socket.write("QUIT\n") }
    @sockets.each(&:close)
  end
end

def run_pool(pool)
  results = WORK.each_with_index.map { |data, i| pool.submit_work(data, i * 100) }
  puts "Results: #{results.join(', ')}"
  pool.shutdown
end

case ARGV[0]
when "local"
  handle = IOMem.new(BUFFER_SIZE)
  workers = []
  sockets = 3.times.map do |i|
    parent_socket, child_socket = UNIXSocket.socketpair
    workers << fork do
      parent_socket.close
      shared_io = child_socket.recv_io
      buffer = ::IO::Buffer.map(shared_io, BUFFER_SIZE)
      worker_loop(child_socket, buffer, i)
      shared_io.close
      child_socket.close
    end
    child_socket.close
    parent_socket.send_io(handle.io)
    parent_socket
  end
  run_pool(SharedMemoryWorkerPool.new(handle.map, sockets))
  workers.each do |pid|
    Process.wait(pid)
    abort "worker_pool: a worker failed" unless $?.success?
  end
  handle.close
when "named"
  socket, name, role, ctrl, arg = Named.args("worker_pool.rb named SOCKET NAME pool CTRL N | worker CTRL ID", 5)
  IOMem::Client.connect(socket: socket) do |client|
    if role == "pool"
      server = UNIXServer.new(ctrl) # listen first: a worker that found the region finds the socket
      client.create(name, BUFFER_SIZE, exclusive: true, lease: true) do |handle|
        sockets = Integer(arg).times.map { server.accept }
        run_pool(SharedMemoryWorkerPool.new(handle.map, sockets))
      end
      server.close
      File.unlink(ctrl)
    else
      client.open(name, timeout: Named::TIMEOUT) do |handle|
        UNIXSocket.open(ctrl) { |s| worker_loop(s, handle.map, Integer(arg)) }
      end
    end
  end
else
  abort "usage: worker_pool.rb local | named SOCKET NAME pool CTRL N | named SOCKET NAME worker CTRL ID"
end
