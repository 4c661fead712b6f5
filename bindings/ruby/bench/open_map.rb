# SPDX-License-Identifier: LGPL-2.1-or-later
# open_map: OPEN + map of a named region from Ruby against the same from C, in one run against one iomemd.
# Each cycle: open by name, map the whole region, write one byte, unmap, close. Rounds alternate C and Ruby
# so both see the same machine load. Printed: the median per-cycle wall time of each and their ratio, and the
# same for the client process's CPU time (user + system), which a loaded machine disturbs less.
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
      ruby_ns = { wall: [], cpu: [] }
      c_ns = { wall: [], cpu: [] }
      rounds.times do
        out = IO.popen([c_bench, sock, "bench", cycles.to_s], &:read)
        abort "open-map (C) failed" unless $?.success?
        wall, cpu = out.split.map { |x| Float(x) }
        c_ns[:wall] << wall
        c_ns[:cpu] << cpu
        GC.start # not inside the timed loop's first cycles
        t = Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond)
        tc = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID, :nanosecond)
        cycles.times do |i|
          r = c.open("bench")
          b = r.map
          b.set_value(:U8, 0, i & 0xff)
          b.free
          r.close
        end
        ruby_ns[:cpu] << (Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID, :nanosecond) - tc).fdiv(cycles)
        ruby_ns[:wall] << (Process.clock_gettime(Process::CLOCK_MONOTONIC, :nanosecond) - t).fdiv(cycles)
      end
      printf("OPEN+map+unmap+close, %d cycles x %d rounds, median per cycle:\n", cycles, rounds)
      %i[wall cpu].each do |k|
        printf("  %-4s  C %7.0f ns  Ruby %7.0f ns  ratio Ruby/C %.2f  (per round: %s)\n", k, median(c_ns[k]),
               median(ruby_ns[k]), median(ruby_ns[k]) / median(c_ns[k]),
               ruby_ns[k].zip(c_ns[k]).map { |r, cc| format("%.2f", r / cc) }.join(" "))
      end
    end
  ensure
    Process.kill(:TERM, pid)
    Process.wait(pid)
  end
end
