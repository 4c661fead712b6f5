# SPDX-License-Identifier: LGPL-2.1-or-later
# interrupt_flood_child: run by test_client.rb (test_interrupts_in_a_flood_never_unwind_libiomem). Usage:
#   interrupt_flood_child.rb SOCKET ROUNDS PROGRESS_FD
# Connects, says "ready", waits for "go" on stdin (the daemon is stopped by then, and the parent floods this
# process with SIGUSR1, whose trap raises), then makes ROUNDS calls that each wait for the stopped daemon until an
# interrupt ends them, writing a byte per round to PROGRESS_FD (a pipe), 64 at a time: the parent tells a hang from
# a slow machine by these. Says "rounds N" then waits for "cont" (the daemon runs again) and makes calls that must
# all succeed, a byte to PROGRESS_FD after each: "ok". A Ruby exception that unwound
# libiomem's frames leaves libiomem's reader gone for good: the next call waits for ever (the parent kills us) or
# memory is reused under it (a crash).
Warning[:experimental] = false
require "iomem"

class Interrupted < StandardError; end

$stdout.sync = true
socket = ARGV.fetch(0)
rounds = Integer(ARGV.fetch(1))
progress = IO.for_fd(Integer(ARGV.fetch(2)), "w", autoclose: true)
progress.sync = true
c = IOMem::Client.new(socket: socket)
# the trap raises at most twice per call: the second can come while the first is being dealt with (the window
# this is about), and the raises never pile up between the calls
$armed = 0
trap("USR1") do
  if $armed > 0
    $armed -= 1
    raise Interrupted
  end
end
done = 0
PROGRESS_EVERY = 64 # rounds between two writes (one per round slowed the rounds: fewer hit the window)
puts "ready"
abort "no go" unless $stdin.gets == "go\n"
rounds.times do
  begin
    begin
      $armed = 2
      c.ping
      abort "ping returned with the daemon stopped"
    rescue Interrupted
      nil # the second raise may come here already
    end
    $armed = 0
  rescue Interrupted # the second raise: $armed is 0 by then
    $armed = 0
  end
  done += 1 # only an Interrupted gets here (a ping that returned aborts)
  progress.write("." * PROGRESS_EVERY) if (done % PROGRESS_EVERY).zero? # $armed is 0: the trap raises nothing here
end
progress.write("." * (done % PROGRESS_EVERY))
puts "rounds #{done}"
abort "no cont" unless $stdin.gets == "cont\n"
3.times do
  c.ping
  progress.write("+")
end
c.create("flood.after", 4096) { |r| raise "bad size" unless r.size == 4096 }
progress.write("+")
c.delete("flood.after")
progress.write("+")
c.close
progress.close
puts "ok"
