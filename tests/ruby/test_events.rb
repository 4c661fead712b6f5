# SPDX-License-Identifier: LGPL-2.1-or-later
# test_events: IOMem::Client watch/events/publish/open(after_generation:)/stat generation/metrics against the real
# iomemd (docs/protocol.md section 15): event contents, replacing under a name while old holders keep their bytes,
# a waiter woken by another process's PUBLISH, Errno mappings, EPERM publishing over another uid's version.
require_relative "helper"
require "rbconfig"

# A relay between one IOMem::Client and iomemd on a socket of its own, passing frames in both directions in order
# (no fds: the client under test makes only calls whose frames carry none). With hold set, a client's UNWATCH is
# kept back until release: its call waits for the reply meanwhile, deterministically. cut: the "daemon" goes away
# (the connections closed, nothing listening there) until listen. With fail_unwatch set, a client's UNWATCH is
# answered by the relay itself with -EIO (the daemon never sees it): the watch stays, on both sides.
class UnwatchHoldingRelay
  attr_reader :path, :held
  attr_accessor :hold, :fail_unwatch

  UNWATCH = 0x0401

  def initialize(daemon_socket)
    @daemon = daemon_socket
    @path = "#{daemon_socket}.relay"
    @held = Queue.new
    @release = Queue.new
    @socks = []
    @threads = []
    @write_lock = Mutex.new
    listen
  end

  def release
    @release.push(true)
  end

  def listen
    @server = UNIXServer.new(@path)
    @threads << Thread.new do
      while (cl = (@server.accept rescue nil))
        d = UNIXSocket.new(@daemon)
        @socks.push(cl, d)
        @threads << Thread.new { requests(cl, d) } << Thread.new { replies(d, cl) }
      end
    end
  end

  def cut
    @server.close
    File.unlink(@path)
    @socks.each { |s| s.close unless s.closed? }
    @socks.clear
  end

  def close
    cut unless @server.closed?
    release
    @threads.each(&:join)
  end

  private

  def requests(cl, d)
    while (h = cl.read(20))
      body = cl.read(h.unpack1("@12L<")).to_s
      if hold && h.unpack1("@6S<") == UNWATCH
        @held.push(true)
        @release.pop
      end
      if fail_unwatch && h.unpack1("@6S<") == UNWATCH
        msg = "relay says no"
        payload = [-5, msg.bytesize].pack("l<S<") + msg + "\0" # -EIO (docs/protocol.md: error reply)
        reply = h.dup
        reply.setbyte(5, 0x03) # REPLY | ERROR
        reply[12, 4] = [payload.bytesize].pack("L<")
        @write_lock.synchronize { cl.write(reply + payload) }
        next
      end
      d.write(h + body)
    end
  rescue IOError, SystemCallError
    nil # cut
  end

  def replies(d, cl)
    loop do
      data = d.readpartial(65_536)
      @write_lock.synchronize { cl.write(data) }
    end
  rescue IOError, SystemCallError
    nil # cut
  end
end

class TestEvents < IOMemTest::TwoClientCase
  PAGE = IO::Buffer::PAGE_SIZE

  DAEMON = IOMemTest::Daemon.new("--quota-watches", "4")
  Minitest.after_run { DAEMON.stop }

  # a local memfd holding @data, sealed as an immutable snapshot (what publish takes)
  def snapshot(data)
    r = IOMem::Region.new(PAGE, backend: :memfd)
    buf = r.map
    buf.set_string(data, 0)
    buf.free # unmapped: a writable mapping would refuse the write seal (EBUSY)
    r.seal(:shrink, :grow, :write)
    r
  end

  def test_watch_created_published_deleted
    w = @c.watch("ev.")
    assert_kind_of Integer, w
    assert_nil @c.next_event(timeout: 0)
    id1 = @other.create("ev.a", 2 * PAGE, mode: 0o640) { |r| r.id }
    @other.create("nomatch", PAGE).close
    ev = @c.next_event(timeout: 60)
    assert_instance_of IOMem::Event, ev
    assert_equal [:created, "ev.a", id1, 2 * PAGE, 0o640, Process.uid, Process.gid, w],
                 [ev.kind, ev.name, ev.id, ev.size, ev.mode, ev.uid, ev.gid, ev.watch_id]
    gen1 = ev.generation
    assert_equal gen1, @other.stat("ev.a").generation
    s = snapshot("v2")
    gen2 = @other.publish("ev.a", s, expect_generation: gen1)
    s.close
    assert_operator gen2, :>, gen1
    ev = @c.next_event(timeout: 60)
    assert_equal [:published, "ev.a", gen2, id1, PAGE, 0o640],
                 [ev.kind, ev.name, ev.generation, ev.replaced_id, ev.size, ev.mode]
    assert_equal %i[shrink grow write].sort, (ev.seals & %i[shrink grow write]).sort
    refute_equal id1, ev.id
    @other.delete("ev.a")
    ev = @c.next_event(timeout: 60)
    assert_equal [:deleted, "ev.a", gen2], [ev.kind, ev.name, ev.generation]
    @other.delete("nomatch")
    assert_nil @c.next_event(timeout: 0) # outside the prefix
    @c.unwatch(w)
    @other.create("ev.b", PAGE).close
    assert_equal [], @c.events(timeout: 0).to_a # no event of a removed watch
    assert_errno(Errno::ENOENT, /unwatch/) { @c.unwatch(w) }
  end

  # An interrupt raised as next_event returns (Thread.handle_interrupt(:on_blocking) defers a Thread#raise queued
  # before the call to the end of its blocking part) dropped the event libiomem had already taken from its queue:
  # the next next_event never saw it. It must come out of the next call.
  class Interrupted < StandardError; end

  def test_interrupt_after_an_event_keeps_it
    w = @c.watch("late.")
    @other.create("late.a", PAGE).close
    @c.ping # the CREATED event is in before the PING's reply (one connection, in order)
    assert_raises(Interrupted) do
      Thread.handle_interrupt(Interrupted => :on_blocking) do
        Thread.current.raise(Interrupted)
        @c.next_event(timeout: 60)
      end
    end
    ev = @c.next_event(timeout: 0)
    refute_nil ev, "the event read under the interrupt is not lost"
    assert_equal [:created, "late.a", w], [ev.kind, ev.name, ev.watch_id]
    assert_nil @c.next_event(timeout: 0) # and comes once
    @c.unwatch(w)
  end

  # A WATCH whose reply came before an interrupt raised as the call returned (deferred there as above) left the
  # daemon's watch behind, its id lost with the call: it held one of the uid's --quota-watches 4 and its events
  # came out of next_event under an id the caller never got. It must be unwatched at once, before the interrupt
  # is raised (another connection of the uid has the whole quota), and none of its events returned.
  def test_interrupt_after_a_watch_reply_unwatches_it
    assert_raises(Interrupted) do
      Thread.handle_interrupt(Interrupted => :on_blocking) do
        Thread.current.raise(Interrupted)
        @c.watch("stray.")
      end
    end
    ids = 4.times.map { |i| @other.watch("q#{i}.") } # no call of @c since: it was unwatched before the raise
    ids.each { |id| @other.unwatch(id) }
  end

  def test_interrupt_after_a_watch_reply_returns_none_of_its_events
    assert_raises(Interrupted) do
      Thread.handle_interrupt(Interrupted => :on_blocking) do
        Thread.current.raise(Interrupted)
        @c.watch("stray.")
      end
    end
    @other.create("stray.a", PAGE).close
    @c.ping # an event of a watch on @c's connection is in before the PING's reply
    assert_nil @c.next_event(timeout: 0), "no event of the watch the caller never got"
    w = @c.watch("stray.") # usable, in step
    @other.create("stray.b", PAGE).close
    ev = @c.next_event(timeout: 60)
    assert_equal [:created, "stray.b", w], [ev.kind, ev.name, ev.watch_id]
    @c.unwatch(w)
  end

  # A watch an interrupt took from the caller, then close and the same Client connected again (initialize): the
  # new connection's watch ids start over, so the old connection's stray ids named the caller's own new watches:
  # next_event skipped their events (and a stray still to unwatch would have unwatched them).
  def test_close_forgets_the_watches_an_interrupt_took
    assert_raises(Interrupted) do
      Thread.handle_interrupt(Interrupted => :on_blocking) do
        Thread.current.raise(Interrupted)
        @c.watch("stray.")
      end
    end
    @c.close
    @c.send(:initialize, socket: DAEMON.socket)
    w = @c.watch("new.")
    @other.create("new.a", PAGE).close
    ev = @c.next_event(timeout: 60)
    refute_nil ev, "the new connection's watch #{w}: its event came"
    assert_equal [:created, "new.a", w], [ev.kind, ev.name, ev.watch_id]
    @c.unwatch(w)
  end

  # Likewise an event kept for next_event by an interrupt (test_interrupt_after_an_event_keeps_it): it was the
  # old connection's, of a watch that ended with it, yet next_event returned it first on the new one.
  def test_close_forgets_a_kept_event
    w = @c.watch("late.")
    @other.create("late.a", PAGE).close
    @c.ping # the CREATED event is in before the PING's reply
    assert_raises(Interrupted) do
      Thread.handle_interrupt(Interrupted => :on_blocking) do
        Thread.current.raise(Interrupted)
        @c.next_event(timeout: 60)
      end
    end
    @c.close
    @c.send(:initialize, socket: DAEMON.socket)
    assert_nil @c.next_event(timeout: 0), "no event of watch #{w} of the old connection"
  end

  # An event of the stray watch that reaches the client before its UNWATCH's reply (made while the relay holds
  # the UNWATCH back) is kept by libiomem: next_event must skip it.
  def test_interrupt_after_a_watch_reply_skips_its_events_read_before_the_unwatch
    relay = UnwatchHoldingRelay.new(DAEMON.socket)
    c = IOMem::Client.new(socket: relay.path)
    relay.hold = true
    t = Thread.new do
      Thread.handle_interrupt(Interrupted => :on_blocking) do
        Thread.current.raise(Interrupted)
        c.watch("stray.")
      end
    rescue Interrupted
      :interrupted
    end
    relay.held.pop # the late interrupt's UNWATCH: the watch is still there
    @other.create("stray.a", PAGE).close # its event goes out before the UNWATCH's reply
    relay.hold = false
    relay.release
    assert_equal :interrupted, t.value
    assert_nil c.next_event(timeout: 0), "no event of the watch the caller never got"
  ensure
    c&.close
    relay&.close
  end

  # The late interrupt's UNWATCH cut short by a further interrupt stays pending; if the next call finds the
  # daemon gone (none answers within the reconnect window: -ENOTCONN), libiomem still holds the watch and makes
  # it again with the connection after: it must stay pending and be unwatched then, not be taken as gone.
  def test_a_pending_stray_unwatch_outlives_a_daemon_gone_for_a_while
    again = Class.new(StandardError)
    relay = UnwatchHoldingRelay.new(DAEMON.socket)
    c = IOMem::Client.new(socket: relay.path, timeout: 5) # the reconnect window: 5 s
    relay.hold = true
    t = Thread.new do
      Thread.handle_interrupt(Interrupted => :on_blocking) do
        Thread.current.raise(Interrupted)
        c.watch("stray.")
      end
    rescue Interrupted, again
      nil
    end
    relay.held.pop
    t.raise(again) # ends the UNWATCH's wait: it stays pending
    t.join
    relay.cut # the daemon goes away (its UNWATCH never reached it)
    relay.release
    assert_raises(Errno::ENOTCONN) { c.ping } # the pending UNWATCH and the PING: none answers
    relay.hold = false
    relay.listen # back
    c.ping # connects again: libiomem makes its watches again, the stray's too
    ids = 4.times.map { |i| @other.watch("q#{i}.") } # the whole --quota-watches 4: the stray was unwatched
    ids.each { |id| @other.unwatch(id) }
  ensure
    c&.close
    relay&.close
  end

  # The list of watches an interrupt took from the caller (strays) kept 32 and forgot the oldest when a 33rd
  # came, even one still to unwatch: that watch then stayed in the daemon for good (holding the uid's watch
  # quota) and next_event returned its events. Here every UNWATCH fails (-EIO from the relay) while 33 watches
  # are taken by a late interrupt: all 33 must still be unwatched once UNWATCH works again.
  def test_a_pending_stray_is_never_forgotten
    d = IOMemTest::Daemon.new("--quota-watches", "100")
    relay = UnwatchHoldingRelay.new(d.socket)
    c = IOMem::Client.new(socket: relay.path)
    relay.fail_unwatch = true
    33.times do |i|
      assert_raises(Interrupted) do
        Thread.handle_interrupt(Interrupted => :on_blocking) do
          Thread.current.raise(Interrupted)
          c.watch("s#{i}.")
        end
      end
    end
    relay.fail_unwatch = false
    c.ping # unwatches what is left to unwatch first
    d.client do |other|
      33.times { |i| other.create("s#{i}.x", PAGE).close }
    end
    c.ping # an event of a watch on c's connection is in before the PING's reply
    ev = c.next_event(timeout: 0)
    assert_nil ev, "no event of a watch the caller never got: #{ev&.name}"
  ensure
    c&.close
    relay&.close
    d&.stop
  end

  # The block form of watch made the watch, then checked for a block before its begin/ensure: an interrupt
  # landing there (Ruby runs interrupts at a branch) left the watch behind, holding one of --quota-watches 4.
  # A TracePoint raises at the first line of iomem.rb run after add_watch returned, as an interrupt would.
  def test_block_watch_interrupted_as_add_watch_returns_unwatches_it
    armed = false
    tp = TracePoint.new(:c_return, :line) do |t|
      if t.event == :c_return && t.method_id == :add_watch
        armed = true
      elsif armed && t.event == :line && t.path.end_with?("/iomem.rb")
        armed = false
        raise Interrupted
      end
    end
    assert_raises(Interrupted) { tp.enable { @c.watch("blk.") { flunk "no event was made" } } }
    refute armed, "the interrupt was raised"
    ids = 4.times.map { |i| @other.watch("q#{i}.") } # the whole quota: the block's watch is gone
    ids.each { |id| @other.unwatch(id) }
  end

  # next_event(timeout: NaN) turned NaN into an int (undefined behaviour: INT_MIN + 1 ms here, a wait without
  # limit and without the slices that let interrupts through): it hung for good. It must raise, as timeout= does.
  def test_next_event_nan_timeout_raises
    @c.add_watch("nan.")
    assert_raises(RangeError) { @c.next_event(timeout: Float::NAN) }
    assert_nil @c.next_event(timeout: 0)
    @c.ping
  end

  def test_watch_block_form_and_quota
    other_watch = @c.watch("other.")
    done = false
    # changes keep coming until the block has seen one: the block's watch is made inside #watch
    producer = Thread.new do
      IOMem::Client.connect(socket: DAEMON.socket) do |p|
        until done
          p.create("blk.a", PAGE).close
          p.delete("blk.a")
        end
      end
    end
    seen = @c.watch("blk.") do |ev|
      break ev
    end
    done = true
    producer.join
    assert_equal "blk.a", seen.name
    assert_includes %i[created deleted], seen.kind
    refute_equal other_watch, seen.watch_id
    @c.events(timeout: 0).to_a # events received before the unwatch
    @c.create("blk.b", PAGE).close # the requester's own change: its events come before the reply
    assert_nil @c.next_event(timeout: 0), "the block form's watch was removed when the block ended"
    @c.create("other.a", PAGE).close
    ev = @c.next_event(timeout: 0)
    assert_equal [:created, "other.a", other_watch], [ev.kind, ev.name, ev.watch_id]
    3.times { @c.watch("q.") } # --quota-watches 4 per uid
    assert_errno(Errno::EDQUOT, /watch/) { @c.watch("q.") }
  end

  def test_publish_replaces_and_old_readers_keep_their_bytes
    s1 = snapshot("first")
    gen1 = @c.publish("pub.a", s1) # a free name: like a CREATE
    s1.close
    old = @c.open("pub.a", read_only: true, after_generation: 0)
    assert_equal gen1, old.generation
    s2 = snapshot("second")
    gen2 = @c.publish("pub.a", s2, mode: 0o644)
    s2.close
    assert_operator gen2, :>, gen1
    assert_equal "first", old.map.get_string(0, 5) # the holder of the old version keeps it
    old.close
    @c.open("pub.a", read_only: true) do |r|
      assert_equal "second", r.map.get_string(0, 6)
      assert_nil r.generation # a plain OPEN does not say
    end
    st = @c.stat("pub.a")
    assert_equal [gen2, 0o644], [st.generation, st.mode]
  end

  def test_publish_errors
    s = snapshot("x")
    gen = @c.publish("err.a", s)
    assert_errno(Errno::ESTALE, /publish "err.a"/) { @c.publish("err.a", s, expect_generation: gen + 1000) }
    assert_equal gen, @c.stat("err.a").generation # nothing changed
    assert_errno(Errno::ENOENT, /publish "err.none"/) { @c.publish("err.none", s, expect_generation: gen) }
    assert_errno(Errno::EINVAL, /expect_generation/) { @c.publish("err.a", s, expect_generation: 0) }
    s.close
    unsealed = IOMem::Region.new(PAGE, backend: :memfd)
    assert_errno(Errno::EPERM, /publish "err.b"/) { @c.publish("err.b", unsealed) } # missing seals
    unsealed.close
    assert_raises(TypeError) { @c.publish("err.a", "bytes") }
    assert_errno(Errno::ENOENT, /open "err.a"/) { @c.open("err.a", after_generation: gen) } # no newer, no wait
    assert_errno(Errno::ETIMEDOUT, /open "err.a"/) { @c.open("err.a", after_generation: gen, timeout: 0.05) }
  end

  def test_open_after_generation_waits_for_another_process
    s = snapshot("gen one")
    gen1 = @c.publish("ver.a", s)
    s.close
    waiter = IO.popen([RbConfig.ruby, "-e", <<~RUBY, DAEMON.socket, gen1.to_s])
      Warning[:experimental] = false
      require "iomem"
      IOMem::Client.connect(socket: ARGV[0]) do |c|
        c.open("ver.a", read_only: true, wait: true, after_generation: Integer(ARGV[1])) do |r|
          puts "\#{r.generation} \#{r.map.get_string(0, 7)}"
        end
      end
    RUBY
    1000.times do # until the waiter is connected (@c, @other, it); it may also come after: the result is the same
      break if @c.status.connections >= 3

      sleep 0.01
    end
    publisher = IO.popen([RbConfig.ruby, "-e", <<~RUBY, DAEMON.socket, gen1.to_s], &:read)
      Warning[:experimental] = false
      require "iomem"
      r = IOMem::Region.new(IO::Buffer::PAGE_SIZE, backend: :memfd)
      r.map.tap { |b| b.set_string("gen two", 0) }.free
      r.seal(:shrink, :grow, :write)
      IOMem::Client.connect(socket: ARGV[0]) { |c| puts c.publish("ver.a", r, expect_generation: Integer(ARGV[1])) }
      r.close
    RUBY
    assert $?.success?, publisher
    gen2 = Integer(publisher)
    out = waiter.read
    waiter.close
    assert $?.success?
    assert_equal "#{gen2} gen two", out.strip
  end

  def test_next_event_releases_the_gvl_and_the_client
    @c.watch("gil.")
    t = Thread.new { @c.next_event } # waits without limit
    # meanwhile this thread runs Ruby and uses the same client (the wait lets go of it between slices)
    @c.ping
    @c.create("gil.a", PAGE).close
    ev = t.value
    assert_equal [:created, "gil.a"], [ev.kind, ev.name]
    # and a waiting call is interruptible
    t = Thread.new { @c.next_event }
    Thread.pass until t.status == "sleep" || !t.alive?
    t.kill
    t.join
    @c.ping
  end

  def test_metrics
    @c.create("m.a", PAGE).close
    samples = @c.metrics
    assert samples.all? { |m| m.is_a?(IOMem::Metric) }
    regions = samples.find { |m| m.name == "iomemd_regions" }
    assert_equal [:gauge, nil, nil], [regions.type, regions.label, regions.label_value]
    assert_equal @c.list.size, regions.value
    creates = samples.select { |m| m.name == "iomemd_requests" && m.label_value == "CREATE" }
    assert_equal 1, creates.size
    assert_equal [:counter, "request"], [creates[0].type, creates[0].label]
    assert_operator creates[0].value, :>=, 1
    refute_empty regions.help
  end

  def test_publish_over_another_uids_version
    skip "needs root and setpriv" unless IOMemTest.root? && system("command -v setpriv >/dev/null")
    File.chmod(0o755, DAEMON.dir)
    s = snapshot("root's")
    @c.publish("ou.a", s, mode: 0o644)
    s.close
    w = @c.watch("ou.")
    stage = IOMemTest.stage_for_other_uid(DAEMON.dir)
    out = IO.popen({ "RUBYLIB" => stage, "LD_LIBRARY_PATH" => stage },
                   ["setpriv", "--reuid", "1501", "--regid", "1601", "--clear-groups", RbConfig.ruby, "-e", <<~RUBY,
      Warning[:experimental] = false
      require "iomem"
      r = IOMem::Region.new(IO::Buffer::PAGE_SIZE, backend: :memfd)
      r.seal(:shrink, :grow, :write)
      IOMem::Client.connect(socket: ARGV[0]) do |c|
        begin
          c.publish("ou.a", r)
          puts "allowed"
        rescue SystemCallError => e
          puts "refused \#{e.class}"
        end
        puts c.publish("ou.mine", r)
      end
    RUBY
                   DAEMON.socket], err: %i[child out], &:read)
    assert $?.success?, out
    lines = out.lines.map(&:strip)
    assert_includes ["refused Errno::EPERM", "refused Errno::EACCES"], lines[0]
    assert_equal "root's", @c.open("ou.a", read_only: true) { |r| r.map.get_string(0, 6) }
    ev = @c.next_event(timeout: 60) # root may read the other uid's region: it sees it created
    assert_equal [:created, "ou.mine", 1501, 1601, Integer(lines[1]), w],
                 [ev.kind, ev.name, ev.uid, ev.gid, ev.generation, ev.watch_id]
    assert_nil @c.next_event(timeout: 0) # the refused PUBLISH changed nothing
  end
end
