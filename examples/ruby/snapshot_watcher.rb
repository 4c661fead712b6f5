# SPDX-License-Identifier: LGPL-2.1-or-later
# snapshot_watcher: react to each new version of NAME that any unrelated process publishes. Watches NAME, prints
# "watching" once the watch exists, then for each CREATED or PUBLISHED event opens the version (read-only, at least
# the event's generation: a newer one may have replaced it meanwhile) and checks it (snapshot_publisher's layout).
# Exits after the event of snapshot LAST.
#   ruby snapshot_watcher.rb SOCKET NAME [LAST]
Warning[:experimental] = false
require "iomem"

abort "usage: snapshot_watcher.rb SOCKET NAME [LAST]" unless (2..3).cover?(ARGV.size)
socket, name, last = ARGV
last = Integer(last || 5)
IOMem::Client.connect(socket: socket) do |client|
  kinds = Hash.new(0)
  # watch without a block makes the watch now and returns its id: "watching" tells that no later version can
  # be missed (the block form, client.watch(name) { |ev| ... }, suits a program with nothing to announce)
  id = client.watch(name)
  puts "watching"
  $stdout.flush
  client.events do |ev|
    next unless ev.watch_id == id || ev.kind == :overflow
    next unless ev.kind == :overflow || (ev.name == name && %i[created published].include?(ev.kind))

    kinds[ev.kind] += 1 unless ev.kind == :overflow
    after = ev.kind == :overflow ? 0 : ev.generation - 1
    done = client.open(name, read_only: true, after_generation: after) do |snap|
      buf = snap.map
      n = Integer(buf.get_string(0, 64)[/\Asnapshot (\d+)\n/, 1])
      intact = buf.get_string(64) == (n % 251).chr * (snap.size - 64)
      puts "watcher: generation #{snap.generation}: snapshot #{n}, #{intact ? 'intact' : 'CORRUPT'}"
      $stdout.flush
      exit 1 unless intact
      n == last && ev.kind != :overflow && ev.generation == snap.generation
    end
    break if done
  end
  client.unwatch(id)
  puts "watcher: events #{kinds.sort.map { |k, v| "#{k} #{v}" }.join(', ')}"
end
