# open_map: OPEN + map of a named region from Ruby against the same from C, in one run against one iomemd.
# Each cycle: open by name, map the whole region, write one byte, unmap, close. Rounds alternate C and Ruby
# so both see the same machine load; the median per-cycle time of each and their ratio are printed.
#   ruby open_map.rb IOMEMD OPEN_MAP_C [CYCLES [ROUNDS]]      (ctest's ruby/bench-smoke runs it small)
Warning[:experimental] = false
require "iomem"
require "tmpdir"
require "socket"

iomemd, c_bench, cycles, rounds = ARGV
abort "usage: open_map.rb IOMEMD OPEN_MAP_C [CYCLES [ROUNDS]]" unless iomemd && c_bench
cycles = Integer(cycles || 20_000)
rounds = Integer(rounds || 7)

def median(a)
  s = a.sort
  s.size.odd? ? s[s.size / 2] : (s[s.size / 2 - 1] + s[s.size / 2]) / 2.0
end

Dir.mktmpdir("iomem-bench-rb.") do |dir|
  sock = File.join(dir, "sock")
  pid = Process.spawn("setpriv", "--pdeathsig", "KILL", iomemd, "--socket", sock, "--log-level", "warning",
                      "--tmpdir", dir, in: File::NULL)
  begin
    until begin
      UNIXSocket.new(sock).close
      true
    rescue SystemCallError
      abort "iomemd exited at startup" if Process.wait(pid, Process::WNOHANG)
      false
    end
      sleep 0.01
    end
    IOMem::Client.connect(socket: sock) do |c|
      c.create("bench", 4096).close
      ruby_ns = []
      c_ns = []
      rounds.times do
        out = IO.popen([c_bench, sock, "bench", cycles.to_s], &:read)
        abort "open-map (C) failed" unless $?.success?
        c_ns << Float(out)
        t = Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)
        cycles.times do |i|
          r = c.open("bench")
          b = r.map
          b.set_value(:U8, 0, i & 0xff)
          b.free
          r.close
        end
        ruby_ns << (Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond) - t).fdiv(cycles)
      end
      printf("OPEN+map+unmap+close, %d cycles x %d rounds, median per cycle:\n", cycles, rounds)
      printf("  C     %8.0f ns\n", median(c_ns))
      printf("  Ruby  %8.0f ns\n", median(ruby_ns))
      printf("  ratio Ruby/C %.2f (rounds: %s)\n", median(ruby_ns) / median(c_ns),
             ruby_ns.zip(c_ns).map { |r, cc| format("%.2f", r / cc) }.join(" "))
    end
  ensure
    Process.kill(:TERM, pid)
    Process.wait(pid)
  end
end
